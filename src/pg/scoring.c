/*
 * scoring.c - the scoring a classification uses (see scoring.h).
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "scoring.h"
#include "task.h"				/* PtScoring (a header of plain C types) */

int			ptune_scoring = PTUNE_SCORING_STORED;

StaticAssertDecl(PTUNE_SCORING_DEFAULT == PT_SCORE_LABEL_TOKENS, "the default is label_tokens");

static const char *const names[] = {
	[PT_SCORE_LABEL_TOKENS] = "label_tokens",
	[PT_SCORE_RANK] = "rank",
};

int
ptune_scoring_from_name(const char *name)
{
	for (int s = 0; s < (int) lengthof(names); s++)
		if (pg_strcasecmp(name, names[s]) == 0)	/* as the setting ptune.scoring */
			return s;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown scoring \"%s\"", name),
			 errhint("Use label_tokens (softmax over the labels' tokens) or rank (sum of "
					 "full-vocabulary log-probabilities, T5X's rank classification).")));
	return -1;					/* not reached */
}

const char *
ptune_scoring_to_name(int scoring)
{
	return scoring >= 0 && scoring < (int) lengthof(names) ? names[scoring] : "?";
}

int
ptune_call_scoring(FunctionCallInfo fcinfo, int argno, int stored)
{
	if (argno < PG_NARGS() && !PG_ARGISNULL(argno))
		return ptune_scoring_from_name(text_to_cstring(PG_GETARG_TEXT_PP(argno)));
	if (ptune_scoring != PTUNE_SCORING_STORED)
		return ptune_scoring;
	return stored;
}
