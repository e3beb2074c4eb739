/*
 * test_gradient.c - the prompt gradient equals finite differences of the
 * loss; results are deterministic and independent of batch packing and of
 * the form cross-attention takes (cross_attention.h).
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

#define N_EX 4
#define PROMPT_LEN 4
#define MAX_TARGET 24

typedef struct Batch
{
	int32_t		input[N_EX][40];
	int32_t		target[N_EX][MAX_TARGET];
	float	   *prompt[N_EX];
	float	   *grad[N_EX];
	PtExample	ex[N_EX];
} Batch;

/*
 * Four examples of different lengths: one longer than max_distance 20, and
 * one whose target (24) is longer than its encoder row (4 prompt rows + 2
 * tokens), which exercises decoder self-attention blocks larger than any
 * encoder block.
 */
static void
make_batch(const PtModel *m, Batch *b, uint64_t seed)
{
	static const int in_len[N_EX] = {7, 33, 12, 2};
	static const int tgt_len[N_EX] = {2, 3, 1, MAX_TARGET};
	int			d = m->cfg.d_model;
	int			vocab = m->cfg.vocab_size < 32000 ? m->cfg.vocab_size : 32000;

	for (int i = 0; i < N_EX; i++)
	{
		for (int j = 0; j < in_len[i]; j++)
			b->input[i][j] = j == in_len[i] - 1 ? 1 : 3 + (int) (test_rand(&seed) % (vocab - 3));
		for (int j = 0; j < tgt_len[i]; j++)
			b->target[i][j] = j == tgt_len[i] - 1 ? 1 : 3 + (int) (test_rand(&seed) % (vocab - 3));
		b->prompt[i] = malloc(sizeof(float) * PROMPT_LEN * d);
		b->grad[i] = malloc(sizeof(float) * PROMPT_LEN * d);
		for (int k = 0; k < PROMPT_LEN * d; k++)
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
		free(b->grad[i]);
	}
}

/* Loss of example i alone, with its prompt moved by eps * dir. */
static double
loss_along(const PtModel *m, PtWorkspace *ws, Batch *b, int i, const float *dir, double eps)
{
	int			n = PROMPT_LEN * m->cfg.d_model;
	float	   *moved = malloc(sizeof(float) * n);
	PtExample	ex = b->ex[i];
	double		loss;

	for (int k = 0; k < n; k++)
		moved[k] = (float) (b->prompt[i][k] + eps * dir[k]);
	ex.prompt = moved;
	loss = pt_objective(m, ws, &ex, 1, NULL, NULL, NULL);
	free(moved);
	return loss;
}

/*
 * Central differences with Richardson extrapolation:
 *   D(h) = (L(p + h u) - L(p - h u)) / 2h,   (4 D(h/2) - D(h)) / 3 = u.g + O(h^4)
 * so a step large enough to rise above float32 noise still gives a tight value.
 */
static double
directional_derivative(const PtModel *m, PtWorkspace *ws, Batch *b, int i, const float *u, double h)
{
	double		d1 = (loss_along(m, ws, b, i, u, h) - loss_along(m, ws, b, i, u, -h)) / (2 * h);
	double		d2 = (loss_along(m, ws, b, i, u, h / 2) - loss_along(m, ws, b, i, u, -h / 2)) / h;

	return (4 * d2 - d1) / 3;
}

static void
check_model_gradient(const char *name, double step, double tolerance)
{
	const char *dir = unit_model_dir(name);
	PtModel    *m;
	PtWorkspace ws = {0};
	Batch		b;
	uint64_t	seed = 42;
	int			n;
	double		worst = 0.0;

	REQUIREF(dir != NULL, "%s test model missing", name);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	n = PROMPT_LEN * m->cfg.d_model;
	make_batch(m, &b, 7);
	REQUIRE(!isnan(pt_objective(m, &ws, b.ex, N_EX, NULL, b.grad, NULL)));

	for (int i = 0; i < N_EX; i++)
	{
		float	   *u = malloc(sizeof(float) * n);
		double		norm = 0.0;

		/* along the gradient itself, then along two random directions */
		for (int trial = 0; trial < 3; trial++)
		{
			double		analytic = 0.0,
						numeric,
						gnorm = 0.0,
						err;

			norm = 0.0;
			for (int k = 0; k < n; k++)
			{
				u[k] = trial == 0 ? b.grad[i][k] : test_uniform(&seed, -1.0f, 1.0f);
				norm += (double) u[k] * u[k];
			}
			for (int k = 0; k < n; k++)
			{
				u[k] = (float) (u[k] / sqrt(norm));
				analytic += (double) u[k] * b.grad[i][k];
				gnorm += (double) b.grad[i][k] * b.grad[i][k];
			}
			numeric = directional_derivative(m, &ws, &b, i, u, step);
			/* relative to the gradient's norm: random directions have small projections */
			err = fabs(numeric - analytic) / sqrt(gnorm);
			worst = fmax(worst, err);
			CHECKF(err < tolerance, "%s example %d direction %d: analytic %.7g numeric %.7g "
				   "(error %.2e of |g| = %.4g)", name, i, trial, analytic, numeric, err, sqrt(gnorm));
		}
		free(u);
	}
	printf("    %s: worst finite-difference error %.2e of |grad|\n", name, worst);
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m);
}

void		test_gradient_finite_differences(void);
void
test_gradient_finite_differences(void)
{
	/* smooth (gelu) model: a large step, Richardson removes the curvature */
	check_model_gradient("tiny-gated", 0.05, 1e-3);
	/*
	 * relu is not differentiable at 0: a large step crosses kinks and a tiny
	 * one drowns in float32 noise.  Measured worst errors: 1.7e-3 at step
	 * 0.006, 3.5e-4 at 0.004, 1.2e-3 at 0.001.  So relu gets a looser bound
	 * here; its exact check is the float64 PyTorch cross-check (errors ~1e-6).
	 */
	check_model_gradient("tiny-relu", 0.004, 2e-3);
}

void		test_determinism(void);
void
test_determinism(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtWorkspace ws = {0};
	Batch		b;
	double		loss1,
				loss2;
	float	   *first;
	int			n;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	n = PROMPT_LEN * m->cfg.d_model;
	make_batch(m, &b, 11);
	first = malloc(sizeof(float) * n);
	loss1 = pt_objective(m, &ws, b.ex, N_EX, NULL, b.grad, NULL);
	memcpy(first, b.grad[1], sizeof(float) * n);
	loss2 = pt_objective(m, &ws, b.ex, N_EX, NULL, b.grad, NULL);
	CHECK(loss1 == loss2);
	CHECK(memcmp(first, b.grad[1], sizeof(float) * n) == 0);
	free(first);
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m);
}

/* A packed batch gives what each example gives alone. */
void		test_packing_matches_single_rows(void);
void
test_packing_matches_single_rows(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtWorkspace ws = {0};
	Batch		b;
	double		batched[N_EX],
				alone;
	float	   *single;
	int			n;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	n = PROMPT_LEN * m->cfg.d_model;
	make_batch(m, &b, 5);
	single = malloc(sizeof(float) * n);
	REQUIRE(!isnan(pt_objective(m, &ws, b.ex, N_EX, batched, b.grad, NULL)));
	for (int i = 0; i < N_EX; i++)
	{
		float	   *g[1] = {single};

		REQUIRE(!isnan(pt_objective(m, &ws, &b.ex[i], 1, &alone, g, NULL)));
		CHECKF(fabs(alone - batched[i]) <= 1e-5 * fabs(alone), "example %d: loss %.8g alone, %.8g batched",
			   i, alone, batched[i]);
		CHECKF(max_rel_error(b.grad[i], single, n) < 1e-4, "example %d: gradient differs by %.2e", i,
			   max_rel_error(b.grad[i], single, n));
	}
	free(single);
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m);
}

/*
 * Mixed precision (a model in bf16): the prompt gradient points where fp32's
 * does (cosine >= 0.99) and the loss stays close; the bf16 model keeps no
 * fp32 weights; and back in fp32 the gradient is fp32's again, bit for bit.
 */
static void
check_mixed_precision_gradient(const char *dir, uint64_t seed)
{
	PtModel    *m32,
			   *m16;
	PtWorkspace ws = {0};
	Batch		b;
	float	   *g32[N_EX];
	double		loss32,
				loss16,
				dot = 0.0,
				n32 = 0.0,
				n16 = 0.0;
	int			n;

	m32 = pt_model_load(dir);
	REQUIREF(m32 != NULL, "%s", pt_error_message());
	n = PROMPT_LEN * m32->cfg.d_model;
	make_batch(m32, &b, seed);
	loss32 = pt_objective(m32, &ws, b.ex, N_EX, NULL, b.grad, NULL);
	for (int i = 0; i < N_EX; i++)
	{
		g32[i] = malloc(sizeof(float) * n);
		memcpy(g32[i], b.grad[i], sizeof(float) * n);
	}
	pt_workspace_free(&ws);

	m16 = pt_model_load_math(dir, PT_MATH_BF16);
	REQUIREF(m16 != NULL, "%s", pt_error_message());
	REQUIRE(m16->math == PT_MATH_BF16);
	CHECK(m16->enc[0].attn.q.w == NULL && m16->dec[0].ff.wo.w == NULL);
	CHECK(m16->cfg.tie_word_embeddings || m16->lm_head.w == NULL);
	loss16 = pt_objective(m16, &ws, b.ex, N_EX, NULL, b.grad, NULL);
	for (int i = 0; i < N_EX; i++)
		for (int k = 0; k < n; k++)
		{
			dot += (double) g32[i][k] * b.grad[i][k];
			n32 += (double) g32[i][k] * g32[i][k];
			n16 += (double) b.grad[i][k] * b.grad[i][k];
		}
	printf("    %s: loss fp32 %.5f bf16 %.5f, gradient cosine %.5f\n", dir, loss32, loss16,
		   dot / sqrt(n32 * n16));
	CHECKF(dot / sqrt(n32 * n16) >= 0.99, "gradient cosine %.4f", dot / sqrt(n32 * n16));
	CHECKF(fabs(loss16 - loss32) <= 0.02 * fabs(loss32) + 0.01, "loss fp32 %.5f, bf16 %.5f", loss32, loss16);

	/* fp32 again: exact */
	pt_workspace_free(&ws);
	REQUIRE(pt_model_set_math(m16, PT_MATH_FP32) == 0);
	CHECK(pt_objective(m16, &ws, b.ex, N_EX, NULL, b.grad, NULL) == loss32);
	for (int i = 0; i < N_EX; i++)
		CHECKF(memcmp(g32[i], b.grad[i], sizeof(float) * n) == 0, "example %d: fp32 gradient changed", i);

	for (int i = 0; i < N_EX; i++)
		free(g32[i]);
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m16);
	pt_model_free(m32);
}

void		test_mixed_precision_gradient(void);
void
test_mixed_precision_gradient(void)
{
	const char *real = getenv("PTUNE_REAL_SHAPE_MODELS");

	if (!pt_bf16_supported())
		SKIP("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)");
	/* an F32 file (weights rounded once) and a BF16 one (used as they are) */
	check_mixed_precision_gradient(unit_model_dir("tiny-gated"), 3);
	check_mixed_precision_gradient(unit_model_dir("tiny-gated-bf16"), 3);
	check_mixed_precision_gradient(unit_model_dir("tiny-relu"), 3);
	/* checkpoints of the real shapes (tools/gen_checkpoint.py), colon-separated */
	if (real && real[0])
	{
		char	   *list = strdup(real);

		for (char *save = NULL, *dir = strtok_r(list, ":", &save); dir; dir = strtok_r(NULL, ":", &save))
			check_mixed_precision_gradient(dir, 3);
		free(list);
	}
}

/*
 * The decoder's output of a forward pass in one cross-attention form
 * (cross_attention.h): four encoder sequences, the first with a chain of 3
 * and a tree of 5 nodes, the third with a chain of 1 (the others have
 * none).  Returns a malloc'ed [Nd, d].
 */
static float *
decoder_out(const PtModel *m, const Batch *b, int form, int *rows)
{
	static const int parent[5] = {-1, 0, 0, 1, 1};
	int32_t		tree_ids[5] = {0, 7, 8, 9, 10};
	PtEncoderSeq enc[N_EX];
	PtDecoderSeq dec[3] = {
		{0, b->target[3], 3, NULL}, {0, tree_ids, 5, parent}, {2, b->target[0], 1, NULL}
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
 * Both cross-attention forms on one model: decoder outputs within out_tol of each other
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
	float	   *out[2],
			   *grad[2][N_EX];
	int			rows[2] = {0, 0},
				n;

	REQUIREF(m != NULL, "%s", pt_error_message());
	n = PROMPT_LEN * m->cfg.d_model;
	make_batch(m, &b, 7);
	for (int form = 0; form < 2; form++)
	{
		for (int i = 0; i < N_EX; i++)
			grad[form][i] = malloc(sizeof(float) * n);
		pt_cross_absorb_force(form);
		loss[form] = pt_objective(m, &ws, b.ex, N_EX, NULL, grad[form], NULL);
		pt_cross_absorb_force(-1);
		out[form] = decoder_out(m, &b, form, &rows[form]);
	}
	REQUIRE(out[0] != NULL && out[1] != NULL && rows[0] == rows[1]);
	out_err = max_rel_error(out[1], out[0], (size_t) rows[0] * m->cfg.d_model);
	for (int i = 0; i < N_EX; i++)
	{
		worst_grad = fmax(worst_grad, max_rel_error(grad[1][i], grad[0][i], n));
		for (int k = 0; k < n; k++)
		{
			dot += (double) grad[0][i][k] * grad[1][i][k];
			n0 += (double) grad[0][i][k] * grad[0][i][k];
			n1 += (double) grad[1][i][k] * grad[1][i][k];
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
	for (int i = 0; i < N_EX; i++)
	{
		free(grad[0][i]);
		free(grad[1][i]);
	}
	free_batch(&b);
	pt_workspace_free(&ws);
	pt_model_free(m);
}

/*
 * Cross-attention absorbed into the queries computes what the usual form
 * does: decoder outputs (chains and trees), the loss and the prompt
 * gradient, in fp32 and in the reduced precisions.
 */
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

	/* flan-t5-small, 32 rows of 148 tokens: 2 decoder rows each absorb in every precision, 148 do not */
	for (int math = PT_MATH_FP32; math <= PT_MATH_INT8; math++)
	{
		CHECK(pt_cross_absorb_pays(6, 64, 512, 32 * 148, 32 * 2, 32 * 2 * 148, math));
		CHECK(!pt_cross_absorb_pays(6, 64, 512, 32 * 148, 32 * 148, 32 * 148 * 148, math));
	}
	/* flan-t5-xl (32 heads of 64, d 2048), 8 rows: 2 decoder rows each absorb, 8 do not */
	CHECK(pt_cross_absorb_pays(32, 64, 2048, 8 * 148, 8 * 2, 8 * 2 * 148, PT_MATH_BF16));
	CHECK(!pt_cross_absorb_pays(32, 64, 2048, 8 * 148, 8 * 8, 8 * 8 * 148, PT_MATH_BF16));
	CHECK(!pt_cross_absorb_pays(6, 64, 512, 148, 0, 0, PT_MATH_FP32));
	/* int8's projections are cheap: a 512-row text with a 16-node trie keeps them, fp32 does not */
	CHECK(!pt_cross_absorb_pays(6, 64, 512, 512, 16, 16 * 512, PT_MATH_INT8));
	CHECK(pt_cross_absorb_pays(6, 64, 512, 512, 16, 16 * 512, PT_MATH_FP32));

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	for (int i = 0; i < 40; i++)
		ids[i] = 3 + i;
	for (int keep = 0; keep < 2; keep++)
	{
		REQUIRE(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, keep) == 0);
		CHECK(pass.cross_absorbed == pt_cross_absorb_pays(m->cfg.num_heads, m->cfg.d_kv,
														  m->cfg.d_model, 40, 2, 80, pass.math));
		CHECK(pass.cross_absorbed ? pass.dec[0].qk_cross && !pass.dec[0].k_cross && pass.cross_stack
			  : !pass.dec[0].qk_cross && pass.dec[0].k_cross && !pass.cross_stack);
		for (int form = 0; form < 2; form++)
		{
			bool		begun;

			pt_cross_absorb_force(form);
			begun = pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, keep) == 0;
			pt_cross_absorb_force(-1);	/* before any check: a failure must not leave it forced */
			REQUIRE(begun);
			CHECK(pass.cross_absorbed == (form == 1));
			CHECK(form == 1 ? pass.dec[0].qk_cross && !pass.dec[0].v_cross
				  : !pass.dec[0].qk_cross && pass.dec[0].v_cross);
			CHECK(!keep || (form == 1) == (pass.g_k_cross == NULL));
		}
	}
	pt_arena_free(&arena);
	pt_model_free(m);
}
