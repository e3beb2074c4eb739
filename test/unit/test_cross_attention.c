/*
 * test_cross_attention.c - cross-attention with keys and values absorbed
 * into the query side (cross_attention.h) computes what the usual form
 * does: decoder outputs (chains and trees), the loss and the prompt
 * gradient, in fp32 and in mixed precision; and the pass picks it by cost.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cross_attention.h"
#include "error.h"
#include "helpers.h"
#include "linear.h"
#include "objective.h"
#include "transformer.h"
#include "unit.h"

#define N_EX 3
#define PROMPT_LEN 5

typedef struct Batch
{
	int32_t		input[N_EX][40];
	int32_t		target[N_EX][8];
	float	   *prompt[N_EX];
	float	   *grad[2][N_EX];	/* per form: [0] usual, [1] absorbed */
	PtExample	ex[N_EX];
} Batch;

static void
make_batch(const PtModel *m, Batch *b)
{
	static const int in_len[N_EX] = {31, 9, 17};
	static const int tgt_len[N_EX] = {2, 1, 4};
	uint64_t	seed = 11;
	int			vocab = m->cfg.vocab_size < 32000 ? m->cfg.vocab_size : 32000;
	int			n = PROMPT_LEN * m->cfg.d_model;

	for (int i = 0; i < N_EX; i++)
	{
		for (int j = 0; j < in_len[i]; j++)
			b->input[i][j] = j == in_len[i] - 1 ? 1 : 3 + (int) (test_rand(&seed) % (vocab - 3));
		for (int j = 0; j < tgt_len[i]; j++)
			b->target[i][j] = j == tgt_len[i] - 1 ? 1 : 3 + (int) (test_rand(&seed) % (vocab - 3));
		b->prompt[i] = malloc(sizeof(float) * n);
		b->grad[0][i] = malloc(sizeof(float) * n);
		b->grad[1][i] = malloc(sizeof(float) * n);
		for (int k = 0; k < n; k++)
			b->prompt[i][k] = test_uniform(&seed, -0.5f, 0.5f);
		b->ex[i] = (PtExample) {b->prompt[i], PROMPT_LEN, b->input[i], in_len[i],
			b->target[i], tgt_len[i], 1.0f / tgt_len[i]};
	}
}

static void
free_batch(Batch *b)
{
	for (int i = 0; i < N_EX; i++)
	{
		free(b->prompt[i]);
		free(b->grad[0][i]);
		free(b->grad[1][i]);
	}
}

/*
 * The decoder's output of a forward pass in one form: three encoder
 * sequences, the first with a chain of 3 and a tree of 5 nodes, the last
 * with a chain of 1 (the second has none).  Returns a malloc'ed [Nd, d].
 */
static float *
decoder_out(const PtModel *m, const Batch *b, int form, int *rows)
{
	static const int parent[5] = {-1, 0, 0, 1, 1};
	int32_t		tree_ids[5] = {0, 7, 8, 9, 10};
	PtEncoderSeq enc[N_EX];
	PtDecoderSeq dec[3] = {
		{0, b->target[2], 3, NULL}, {0, tree_ids, 5, parent}, {2, b->target[0], 1, NULL}
	};
	PtArena		arena = {0};
	PtPass		pass;
	float	   *out = NULL;

	for (int i = 0; i < N_EX; i++)
		enc[i] = (PtEncoderSeq) {b->prompt[i], PROMPT_LEN, b->input[i], b->ex[i].n_input};
	pt_cross_absorb_force(form);
	if (pt_pass_begin(&pass, m, &arena, enc, N_EX, dec, 3, false) == 0 &&
		pass.cross_absorbed == (form == 1))
	{
		pt_encoder_forward(&pass);
		pt_decoder_forward(&pass);
		*rows = pass.dec_rows;
		out = malloc(sizeof(float) * pass.dec_rows * m->cfg.d_model);
		memcpy(out, pass.dec_out, sizeof(float) * pass.dec_rows * m->cfg.d_model);
	}
	pt_cross_absorb_force(-1);
	pt_arena_free(&arena);
	return out;
}

/*
 * Both forms on one model: decoder outputs within out_tol of each other
 * (relative to the largest), losses within loss_tol, and prompt gradients
 * with a cosine of at least min_cosine and a largest difference within
 * grad_tol of the largest gradient entry.
 */
static void
compare_forms(const char *dir, PtMath math, double out_tol, double loss_tol, double grad_tol,
			  double min_cosine)
{
	PtModel    *m = pt_model_load_math(dir, math);
	PtWorkspace ws = {0};
	Batch		b;
	double		loss[2],
				dot = 0,
				n0 = 0,
				n1 = 0,
				worst_grad = 0,
				out_err;
	float	   *out[2];
	int			rows[2] = {0, 0},
				n;

	REQUIREF(m != NULL, "%s", pt_error_message());
	n = PROMPT_LEN * m->cfg.d_model;
	make_batch(m, &b);
	for (int form = 0; form < 2; form++)
	{
		pt_cross_absorb_force(form);
		loss[form] = pt_objective(m, &ws, b.ex, N_EX, NULL, b.grad[form], NULL);
		pt_cross_absorb_force(-1);
		out[form] = decoder_out(m, &b, form, &rows[form]);
	}
	REQUIRE(out[0] != NULL && out[1] != NULL && rows[0] == rows[1]);
	out_err = max_rel_error(out[1], out[0], (size_t) rows[0] * m->cfg.d_model);
	for (int i = 0; i < N_EX; i++)
	{
		worst_grad = fmax(worst_grad, max_rel_error(b.grad[1][i], b.grad[0][i], n));
		for (int k = 0; k < n; k++)
		{
			dot += (double) b.grad[0][i][k] * b.grad[1][i][k];
			n0 += (double) b.grad[0][i][k] * b.grad[0][i][k];
			n1 += (double) b.grad[1][i][k] * b.grad[1][i][k];
		}
	}
	printf("    %s %s: decoder output %.2e, loss %.7g / %.7g, gradient %.2e (cosine %.7f)\n",
		   dir, pt_math_name(math), out_err, loss[0], loss[1], worst_grad, dot / sqrt(n0 * n1));
	CHECKF(out_err <= out_tol, "decoder output differs by %.2e of its largest value", out_err);
	CHECKF(fabs(loss[1] - loss[0]) <= loss_tol * fabs(loss[0]), "loss %.9g vs %.9g", loss[1], loss[0]);
	CHECKF(worst_grad <= grad_tol, "prompt gradient differs by %.2e of its largest entry", worst_grad);
	CHECKF(dot / sqrt(n0 * n1) >= min_cosine, "gradient cosine %.7f", dot / sqrt(n0 * n1));

	free(out[0]);
	free(out[1]);
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m);
}

void		test_cross_absorbed_matches_usual(void);
void
test_cross_absorbed_matches_usual(void)
{
	/* fp32: the two forms sum in another order, nothing more */
	compare_forms(unit_model_dir("tiny-gated"), PT_MATH_FP32, 1e-5, 1e-6, 1e-4, 0.9999999);
	compare_forms(unit_model_dir("tiny-relu"), PT_MATH_FP32, 1e-5, 1e-6, 1e-4, 0.9999999);
	/* bf16 rounds other operands in each form (q or K): within bf16's precision */
	if (pt_bf16_supported())
		compare_forms(unit_model_dir("tiny-gated"), PT_MATH_BF16, 3e-2, 1e-2, 0.1, 0.999);
	else
		printf("    (no bf16 comparison: this CPU has no bfloat16 instructions)\n");
	/* int8 inference runs the usual form's products in int8, the absorbed one's q side in fp32 */
	if (pt_int8_supported())
		compare_forms(unit_model_dir("tiny-gated"), PT_MATH_INT8, 5e-2, 1e-6, 1e-4, 0.9999999);
}

/*
 * The cost rule: label scoring and training on short targets absorb; long
 * decoder sequences (generation-length targets, many heads) do not.  And
 * the pass lays out the buffers of the form it picked.
 */
void		test_cross_absorb_choice(void);
void
test_cross_absorb_choice(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtArena		arena = {0};
	PtPass		pass;
	int32_t		ids[40];
	PtEncoderSeq enc = {NULL, 0, ids, 40};
	PtDecoderSeq dec = {0, ids, 2, NULL};

	/* flan-t5-small, 32 rows of 148 tokens: 2 decoder rows each absorb, 148 do not */
	CHECK(pt_cross_absorb_pays(6, 64, 512, 32 * 148, 32 * 2, 32 * 2 * 148));
	CHECK(!pt_cross_absorb_pays(6, 64, 512, 32 * 148, 32 * 148, 32 * 148 * 148));
	/* flan-t5-xl (32 heads of 64, d 2048): 2 rows absorb, 8 do not */
	CHECK(pt_cross_absorb_pays(32, 64, 2048, 148, 2, 2 * 148));
	CHECK(!pt_cross_absorb_pays(32, 64, 2048, 148, 8, 8 * 148));
	CHECK(!pt_cross_absorb_pays(6, 64, 512, 148, 0, 0));

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	for (int i = 0; i < 40; i++)
		ids[i] = 3 + i;
	for (int keep = 0; keep < 2; keep++)
	{
		REQUIRE(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, keep) == 0);
		CHECK(pass.cross_absorbed == pt_cross_absorb_pays(m->cfg.num_heads, m->cfg.d_kv,
														  m->cfg.d_model, 40, 2, 80));
		CHECK(pass.cross_absorbed ? pass.dec[0].qk_cross && !pass.dec[0].k_cross && pass.cross_stack
			  : !pass.dec[0].qk_cross && pass.dec[0].k_cross && !pass.cross_stack);
		for (int form = 0; form < 2; form++)
		{
			pt_cross_absorb_force(form);
			REQUIRE(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, keep) == 0);
			CHECK(pass.cross_absorbed == (form == 1));
			CHECK(form == 1 ? pass.dec[0].qk_cross && !pass.dec[0].v_cross
				  : !pass.dec[0].qk_cross && pass.dec[0].v_cross);
			CHECK(!keep || (form == 1) == (pass.g_k_cross == NULL));
			pt_cross_absorb_force(-1);
		}
	}
	pt_arena_free(&arena);
	pt_model_free(m);
}
