/*
 * metrics.h - accuracy, macro-F1 and the confusion matrix of a classifier;
 * exact match and token-level F1 of generated text (SQuAD's definitions).
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

/*
 * SQuAD's answer normalisation (the official evaluate-v2.0.py,
 * normalize_answer): lower case, drop punctuation, drop the articles a, an,
 * the (as whole words), collapse whitespace.  Lower-casing and punctuation
 * are ASCII's (string.punctuation); other bytes, UTF-8 included, are kept as
 * they are.  Returns a malloc'ed string (NULL when out of memory).
 */
char	   *pt_squad_normalize(const char *s);

/*
 * SQuAD's token-level F1 of a prediction against the truth: the normalised
 * texts split at whitespace, tokens counted with multiplicity (Counter
 * intersection), F1 = 2PR / (P + R).  Either side without tokens: 1 if both
 * are empty, else 0 (evaluate-v2.0.py).  Negative when out of memory.
 */
double		pt_squad_f1(const char *prediction, const char *truth);

#endif
