/*
 * metrics.c - see metrics.h.
 */
#include <stdlib.h>

#include "metrics.h"

int
pt_confusion_init(PtConfusion *c, int n_labels)
{
	c->n_labels = n_labels;
	c->rows = 0;
	c->counts = calloc((size_t) n_labels * n_labels + 1, sizeof(long));
	return c->counts ? 0 : -1;
}

void
pt_confusion_free(PtConfusion *c)
{
	free(c->counts);
	c->counts = NULL;
}

void
pt_confusion_add(PtConfusion *c, int truth, int predicted)
{
	c->counts[(size_t) truth * c->n_labels + predicted]++;
	c->rows++;
}

double
pt_accuracy(const PtConfusion *c)
{
	long		correct = 0;

	for (int j = 0; j < c->n_labels; j++)
		correct += c->counts[(size_t) j * c->n_labels + j];
	return c->rows ? (double) correct / c->rows : 0.0;
}

double
pt_macro_f1(const PtConfusion *c)
{
	double		sum = 0.0;
	int			classes = 0;

	for (int j = 0; j < c->n_labels; j++)
	{
		long		tp = c->counts[(size_t) j * c->n_labels + j];
		long		truth = 0,
					predicted = 0;

		for (int k = 0; k < c->n_labels; k++)
		{
			truth += c->counts[(size_t) j * c->n_labels + k];
			predicted += c->counts[(size_t) k * c->n_labels + j];
		}
		if (truth == 0 && predicted == 0)
			continue;
		/* F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (truth + predicted) */
		sum += 2.0 * tp / (double) (truth + predicted);
		classes++;
	}
	return classes ? sum / classes : 0.0;
}
