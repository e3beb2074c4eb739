/*
 * metrics.h - accuracy, macro-F1 and the confusion matrix of a classifier.
 *
 * Plain C without dependencies, so the PostgreSQL layer compiles it too.
 */
#ifndef PT_METRICS_H
#define PT_METRICS_H

typedef struct PtConfusion
{
	int			n_labels;
	long	   *counts;			/* [truth * n_labels + predicted] */
	long		rows;
} PtConfusion;

int			pt_confusion_init(PtConfusion *c, int n_labels);
void		pt_confusion_free(PtConfusion *c);
void		pt_confusion_add(PtConfusion *c, int truth, int predicted);
double		pt_accuracy(const PtConfusion *c);
/* Mean F1 over the labels that occur as truth or prediction. */
double		pt_macro_f1(const PtConfusion *c);

#endif
