/*
 * test_tokenizer.c - token ids equal sentencepiece's reference ids, and
 * truncation of huge inputs is both exact and cheap.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "tokenizer.h"
#include "unit.h"

/* Undoes the escapes of tokenizer_cases.tsv: \\ \t \n \r */
static void
unescape(char *s)
{
	char	   *out = s;

	for (; *s; s++)
	{
		if (*s == '\\' && s[1])
		{
			s++;
			*out++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
		}
		else
			*out++ = *s;
	}
	*out = '\0';
}

void		test_tokenizer_reference_cases(void);
void
test_tokenizer_reference_cases(void)
{
	const char *model = unit_shared_path("tokenizers/t5/spiece.model");
	const char *cases = unit_shared_path("tokenizers/t5/tokenizer_cases.tsv");
	PtTokenizer *tok;
	char	   *text,
			   *line,
			   *save = NULL;
	int			n_cases = 0;

	REQUIREF(model && cases, "PTUNE_SHARED must point to the shared folder");
	tok = load_tokenizer_file(model);
	REQUIRE(tok != NULL);
	CHECK(pt_tokenizer_vocab_size(tok) == 32000);
	text = read_whole_file(cases, NULL);
	REQUIRE(text != NULL);

	line = strtok_r(text, "\n", &save);	/* header */
	while ((line = strtok_r(NULL, "\n", &save)) != NULL)
	{
		char	   *name = line,
				   *input = strchr(name, '\t'),
				   *expected,
				   *end;
		int32_t		ids[4096];
		int			n;
		char		got[16384] = "";

		REQUIRE(input != NULL);
		*input++ = '\0';
		expected = strchr(input, '\t');
		REQUIRE(expected != NULL);
		*expected++ = '\0';
		end = strchr(expected, '\t');
		if (end)
			*end = '\0';
		unescape(input);

		n = pt_tokenizer_encode(tok, input, strlen(input), ids, 4096);
		CHECKF(n >= 0, "case %s: encode failed", name);
		for (int i = 0; i < n; i++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), i ? " %d" : "%d", ids[i]);
		CHECKF(strcmp(got, expected) == 0, "case %s: got [%s], expected [%s]", name, got, expected);
		n_cases++;
	}
	CHECKF(n_cases == 35, "read %d cases, expected 35", n_cases);
	free(text);
	pt_tokenizer_free(tok);
}

void		test_tokenizer_truncation(void);
void
test_tokenizer_truncation(void)
{
	const char *model = unit_shared_path("tokenizers/t5/spiece.model");
	PtTokenizer *tok;
	size_t		size = 10 * 1024 * 1024;
	char	   *huge = malloc(size + 1);
	static const char *words[] = {"prompt ", "tuning ", "keeps ", "the ", "model ", "frozen; ",
	"über-", "naïve ", "3.14159 ", "http://example.com/x?y=1 "};
	size_t		pos = 0;
	int32_t		full[600],
				cut[64];
	int			n_full,
				n_cut;
	clock_t		start;
	double		seconds;

	REQUIRE(model != NULL && huge != NULL);
	tok = load_tokenizer_file(model);
	REQUIRE(tok != NULL);
	for (int w = 0; pos < size; w = (w * 7 + 3) % 10)
	{
		size_t		len = strlen(words[w]);

		if (pos + len > size)
			len = size - pos;
		memcpy(huge + pos, words[w], len);
		pos += len;
	}
	huge[size] = '\0';

	/* the first 64 ids of a 10 MB text equal the first 64 ids of a short prefix */
	start = clock();
	n_cut = pt_tokenizer_encode(tok, huge, size, cut, 64);
	seconds = (double) (clock() - start) / CLOCKS_PER_SEC;
	n_full = pt_tokenizer_encode(tok, huge, 4000, full, 600);
	CHECK(n_cut == 64);
	CHECK(n_full > 64);
	CHECK(memcmp(cut, full, sizeof(int32_t) * 64) == 0);
	CHECKF(seconds < 0.05, "truncated encode of 10 MB took %.3f s", seconds);

	/* a 10 MB run without any whitespace still truncates without splitting a character */
	memset(huge, 'a', size);
	memcpy(huge + 100, "\xc3\xa9", 2);
	n_cut = pt_tokenizer_encode(tok, huge, size, cut, 8);
	CHECK(n_cut == 8);

	/* empty text gives no ids */
	CHECK(pt_tokenizer_encode(tok, "", 0, cut, 8) == 0);
	free(huge);
	pt_tokenizer_free(tok);
}
