/*
 * metrics.c - see metrics.h.
 */
#include <stdlib.h>
#include <string.h>

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

/* ---- SQuAD's exact match and token F1 ------------------------------------ */

/* Python's string.punctuation */
static const char SQUAD_PUNCTUATION[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int
is_article(const char *word, size_t len)
{
	return (len == 1 && word[0] == 'a') || (len == 2 && strncmp(word, "an", 2) == 0) ||
		(len == 3 && strncmp(word, "the", 3) == 0);
}

char *
pt_squad_normalize(const char *s)
{
	size_t		n = strlen(s);
	char	   *lowered = malloc(n + 1),
			   *out = malloc(n + 1);
	size_t		m = 0,
				o = 0;

	if (lowered == NULL || out == NULL)
	{
		free(lowered);
		free(out);
		return NULL;
	}
	/* lower case, without punctuation (ASCII's; UTF-8 bytes are >= 0x80 and kept) */
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x80 && strchr(SQUAD_PUNCTUATION, c) != NULL)
			continue;
		lowered[m++] = (char) (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	lowered[m] = '\0';
	/* the words but articles, joined by single spaces */
	for (size_t i = 0; i < m;)
	{
		size_t		start;

		while (i < m && is_space(lowered[i]))
			i++;
		start = i;
		while (i < m && !is_space(lowered[i]))
			i++;
		if (i == start || is_article(lowered + start, i - start))
			continue;
		if (o > 0)
			out[o++] = ' ';
		memcpy(out + o, lowered + start, i - start);
		o += i - start;
	}
	out[o] = '\0';
	free(lowered);
	return out;
}

/* Splits a normalised text at its single spaces, in place: the token count. */
static int
split_words(char *s, char **words)
{
	int			n = 0;

	if (*s == '\0')
		return 0;
	words[n++] = s;
	for (; *s; s++)
		if (*s == ' ')
		{
			*s = '\0';
			words[n++] = s + 1;
		}
	return n;
}

double
pt_squad_f1(const char *prediction, const char *truth)
{
	char	   *p = pt_squad_normalize(prediction),
			   *t = pt_squad_normalize(truth);
	char	  **pw = NULL,
			  **tw = NULL;
	char	   *used = NULL;
	int			np,
				nt,
				same = 0;
	double		f1 = -1.0;

	if (p == NULL || t == NULL)
		goto done;
	/* at most one word per two bytes, plus one */
	pw = malloc(sizeof(char *) * (strlen(p) / 2 + 2));
	tw = malloc(sizeof(char *) * (strlen(t) / 2 + 2));
	used = calloc(strlen(t) / 2 + 2, 1);
	if (pw == NULL || tw == NULL || used == NULL)
		goto done;
	np = split_words(p, pw);
	nt = split_words(t, tw);
	if (np == 0 || nt == 0)
	{
		f1 = np == nt ? 1.0 : 0.0;
		goto done;
	}
	/* common tokens with multiplicity: each truth token matches at most one predicted token */
	for (int i = 0; i < np; i++)
		for (int j = 0; j < nt; j++)
			if (!used[j] && strcmp(pw[i], tw[j]) == 0)
			{
				used[j] = 1;
				same++;
				break;
			}
	if (same == 0)
		f1 = 0.0;
	else
	{
		double		precision = (double) same / np,
					recall = (double) same / nt;

		f1 = 2 * precision * recall / (precision + recall);
	}
done:
	free(p);
	free(t);
	free(pw);
	free(tw);
	free(used);
	return f1;
}
