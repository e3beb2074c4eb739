/*
 * test_cross_shapes.c - random batch shapes through both cross-attention
 * forms (cross_attention.h), forward and backward, compared: several
 * encoder sequences, 0 to 9 decoder sequences (chains, and trees without
 * backward), encoder sequences no decoder sequence attends to, several
 * decoder sequences per encoder sequence.  Shapes where Td * H * Te exceeds
 * every other score block check the backward's dS slice sizing (pass.c):
 * without it the pass aborts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cross_attention.h"
#include "error.h"
#include "helpers.h"
#include "linear.h"
#include "transformer.h"
#include "unit.h"

#define MAXE 6
#define MAXD 10

typedef struct Shape
{
	int			n_enc,
				n_dec;
	PtEncoderSeq enc[MAXE];
	PtDecoderSeq dec[MAXD];
	int32_t		ids[MAXE + MAXD][80];
	int			parent[MAXD][80];
	float	   *prompt[MAXE];
} Shape;

static void
make_shape(const PtModel *m, uint64_t *seed, Shape *s, bool trees)
{
	int			d = m->cfg.d_model;
	int			vocab = m->cfg.vocab_size;

	memset(s, 0, sizeof(*s));
	s->n_enc = 1 + (int) (test_rand(seed) % MAXE);
	for (int i = 0; i < s->n_enc; i++)
	{
		int			pl = (int) (test_rand(seed) % 4);
		int			n = (int) (test_rand(seed) % 60) + (pl == 0 ? 1 : 0);

		s->prompt[i] = malloc(sizeof(float) * (pl + 1) * d);
		for (int k = 0; k < pl * d; k++)
			s->prompt[i][k] = test_uniform(seed, -0.5f, 0.5f);
		for (int j = 0; j < n; j++)
			s->ids[i][j] = 3 + (int) (test_rand(seed) % (vocab - 3));
		s->enc[i] = (PtEncoderSeq) {s->prompt[i], pl, s->ids[i], n};
	}
	s->n_dec = (int) (test_rand(seed) % MAXD);
	{
		int			g = 0;

		for (int q = 0; q < s->n_dec; q++)
		{
			int			n = 1 + (int) (test_rand(seed) % ((test_rand(seed) % 3) == 0 ? 70 : 4));
			int32_t    *ids = s->ids[MAXE + q];

			g += (int) (test_rand(seed) % 3 == 0);
			if (g >= s->n_enc)
				g = s->n_enc - 1;
			for (int j = 0; j < n; j++)
				ids[j] = 3 + (int) (test_rand(seed) % (vocab - 3));
			s->dec[q] = (PtDecoderSeq) {g, ids, n, NULL};
			if (trees && test_rand(seed) % 2)
			{
				s->parent[q][0] = -1;
				for (int j = 1; j < n; j++)
					s->parent[q][j] = (int) (test_rand(seed) % j);
				s->dec[q].parent = s->parent[q];
			}
		}
	}
}

static void
free_shape(Shape *s)
{
	for (int i = 0; i < s->n_enc; i++)
		free(s->prompt[i]);
}

/* forward (and backward with keep) in one form: out = dec_out, gin = d_x0 */
static int
run_form(const PtModel *m, Shape *s, bool keep, int form, float **out, float **gin, size_t *nd,
		 size_t *ne, uint64_t gseed)
{
	PtArena		arena = {0};
	PtPass		pass;
	int			d = m->cfg.d_model;

	pt_cross_absorb_force(form);
	if (pt_pass_begin(&pass, m, &arena, s->enc, s->n_enc, s->dec, s->n_dec, keep) != 0)
	{
		pt_cross_absorb_force(-1);
		return -1;
	}
	pt_cross_absorb_force(-1);
	if (s->n_dec > 0 && pass.cross_absorbed != (form == 1))
		return -2;
	pt_encoder_forward(&pass);
	pt_decoder_forward(&pass);
	*nd = (size_t) pass.dec_rows * d;
	*ne = (size_t) pass.enc_rows * d;
	*out = malloc(sizeof(float) * (*nd + 1));
	memcpy(*out, pass.dec_out, sizeof(float) * *nd);
	*gin = NULL;
	if (keep)
	{
		float	   *dy = malloc(sizeof(float) * (*nd + 1));

		for (size_t k = 0; k < *nd; k++)
			dy[k] = test_uniform(&gseed, -1.0f, 1.0f);
		pt_decoder_backward(&pass, dy);
		pt_encoder_backward(&pass);
		*gin = malloc(sizeof(float) * (*ne + 1));
		memcpy(*gin, pass.d_x0, sizeof(float) * *ne);
		free(dy);
	}
	pt_arena_free(&arena);
	return 0;
}

static void
fuzz(const char *name, PtMath math, int rounds, double otol, double gtol)
{
	const char *dir = unit_model_dir(name);
	PtModel    *m;
	uint64_t	seed = 12345;
	double		worst_o = 0,
				worst_g = 0;

	REQUIRE(dir != NULL);
	m = pt_model_load_math(dir, math);
	REQUIREF(m != NULL, "%s", pt_error_message());
	for (int r = 0; r < rounds; r++)
	{
		bool		keep = r % 2 == 1;
		Shape		s;
		float	   *out[2],
				   *gin[2];
		size_t		nd[2],
					ne[2];

		make_shape(m, &seed, &s, !keep);
		for (int form = 0; form < 2; form++)
		{
			int			rc = run_form(m, &s, keep, form, &out[form], &gin[form], &nd[form], &ne[form], 99 + r);

			REQUIREF(rc == 0, "round %d form %d rc %d: %s", r, form, rc, pt_error_message());
		}
		if (nd[0] > 0)
		{
			double		e = max_rel_error(out[1], out[0], nd[0]);

			worst_o = fmax(worst_o, e);
			CHECKF(e <= otol, "round %d (keep %d, n_enc %d n_dec %d): output %.3e", r, keep, s.n_enc, s.n_dec, e);
		}
		if (keep)
		{
			double		e = max_rel_error(gin[1], gin[0], ne[0]);

			worst_g = fmax(worst_g, e);
			CHECKF(e <= gtol || s.n_dec == 0, "round %d (n_enc %d n_dec %d): d_x0 %.3e", r, s.n_enc, s.n_dec, e);
			free(gin[0]);
			free(gin[1]);
		}
		free(out[0]);
		free(out[1]);
		free_shape(&s);
	}
	printf("    %s %s: worst output %.3e, worst d_x0 %.3e\n", name, pt_math_name(math), worst_o, worst_g);
	pt_model_free(m);
}

void		test_cross_absorbed_random_shapes(void);
void
test_cross_absorbed_random_shapes(void)
{
	int			rounds = 40;

	fuzz("tiny-gated", PT_MATH_FP32, rounds, 1e-5, 1e-4);
	fuzz("tiny-relu", PT_MATH_FP32, rounds, 1e-5, 1e-4);
	if (pt_bf16_supported())
	{
		fuzz("tiny-gated", PT_MATH_BF16, rounds, 5e-2, 0.2);
		fuzz("tiny-gated-bf16", PT_MATH_BF16, rounds, 5e-2, 0.2);
	}
	if (pt_int8_supported())
		fuzz("tiny-gated", PT_MATH_INT8, rounds, 5e-2, 1e-4);
}

