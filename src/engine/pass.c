/*
 * pass.c - validate a batch, pack its sequences and lay out its activations
 * in an arena (see transformer.h).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_bf16.h"
#include "cross_attention.h"
#include "error.h"
#include "transformer.h"

/* Sizes that depend on the batch, computed before anything is allocated. */
typedef struct PassSizes
{
	size_t		N,
				Nd;				/* encoder rows, decoder rows */
	size_t		rows;			/* max(N, Nd) */
	size_t		enc_probs,
				dec_self_probs,
				dec_cross_probs;	/* floats, summed over sequences and heads */
	size_t		dscores;		/* floats per thread for attention backward's dS block */
	size_t		cross_pairs;	/* sum over decoder sequences of Td * Te */
	size_t		cross_block;	/* the largest Td * Te */
	bool		cross_absorbed;	/* cross-attention absorbed into the queries */
	int			enc_max,
				dec_max;
	bool		dec_tree;		/* some decoder sequence is a tree */
} PassSizes;

/*
 * The products' precision: inference uses the model's; training too in bf16
 * (mixed precision: the products in bf16, everything else in fp32), else fp32.
 */
static PtMath
pass_math(const PtModel *m, bool keep)
{
	return keep && m->math != PT_MATH_BF16 ? PT_MATH_FP32 : m->math;
}

/*
 * Checks a tree decoder sequence's parents (see PtDecoderSeq); *path_len
 * receives its longest root-to-node path.
 */
static int
validate_tree(const PtDecoderSeq *seq, int s, int *path_len)
{
	int		   *depth = pt_calloc(seq->n_ids, sizeof(int));

	if (depth == NULL)
		return -1;
	*path_len = 1;
	for (int i = 0; i < seq->n_ids; i++)
	{
		int			up = seq->parent[i];

		if (i == 0 ? up != -1 : (up < 0 || up >= i))
		{
			free(depth);
			return pt_fail(PT_ERR_ARGUMENT, "decoder tree %d: node %d has parent %d; the root "
						   "has -1, every other node an earlier node", s, i, up);
		}
		depth[i] = i == 0 ? 0 : depth[up] + 1;
		if (depth[i] + 1 > *path_len)
			*path_len = depth[i] + 1;
	}
	free(depth);
	if (*path_len > PT_MAX_SEQ_LEN)
		return pt_fail(PT_ERR_ARGUMENT, "decoder tree %d has a path of %d nodes; at most %d",
					   s, *path_len, PT_MAX_SEQ_LEN);
	return 0;
}

static int
validate(const PtModel *m, const PtEncoderSeq *enc, int n_enc,
		 const PtDecoderSeq *dec, int n_dec, bool keep, PassSizes *z)
{
	const PtConfig *c = &m->cfg;
	size_t		H = (size_t) c->num_heads;

	memset(z, 0, sizeof(*z));
	if (n_enc < 1 || n_enc > PT_MAX_ROWS)
		return pt_fail(PT_ERR_ARGUMENT, "a batch needs 1 to %d encoder sequences (got %d)",
					   PT_MAX_ROWS, n_enc);
	if (n_dec < 0 || n_dec > PT_MAX_ROWS)
		return pt_fail(PT_ERR_ARGUMENT, "a batch takes 0 to %d decoder sequences (got %d)",
					   PT_MAX_ROWS, n_dec);
	for (int s = 0; s < n_enc; s++)
	{
		long		len = (long) enc[s].prompt_len + enc[s].n_ids;

		if (enc[s].prompt_len < 0 || enc[s].n_ids < 0 || len < 1 || len > PT_MAX_SEQ_LEN)
			return pt_fail(PT_ERR_ARGUMENT, "encoder sequence %d has length %ld (prompt %d + "
						   "%d tokens); it must be 1 to %d", s, len, enc[s].prompt_len,
						   enc[s].n_ids, PT_MAX_SEQ_LEN);
		if (enc[s].prompt_len > 0 && enc[s].prompt == NULL)
			return pt_fail(PT_ERR_ARGUMENT, "encoder sequence %d has no prompt values", s);
		for (int i = 0; i < enc[s].n_ids; i++)
			if (enc[s].ids[i] < 0 || enc[s].ids[i] >= c->vocab_size)
				return pt_fail(PT_ERR_ARGUMENT, "token id %d is outside the vocabulary [0, %d)",
							   enc[s].ids[i], c->vocab_size);
		z->N += (size_t) len;
		z->enc_probs += H * (size_t) len * (size_t) len;
		if ((size_t) len * len > z->dscores)
			z->dscores = (size_t) len * len;	/* encoder self-attention: Te x Te */
		if (len > z->enc_max)
			z->enc_max = (int) len;
	}
	for (int s = 0; s < n_dec; s++)
	{
		size_t		te;

		int			path_len = dec[s].n_ids;
		int			max_len = dec[s].parent ? PT_MAX_ROWS : PT_MAX_SEQ_LEN;

		if (dec[s].enc < 0 || dec[s].enc >= n_enc || (s > 0 && dec[s].enc < dec[s - 1].enc))
			return pt_fail(PT_ERR_ARGUMENT, "decoder sequences must refer to encoder sequences "
						   "in non-decreasing order (sequence %d refers to %d)", s, dec[s].enc);
		if (dec[s].n_ids < 1 || dec[s].n_ids > max_len)
			return pt_fail(PT_ERR_ARGUMENT, "decoder sequence %d has length %d; it must be 1 to %d",
						   s, dec[s].n_ids, max_len);
		if (dec[s].parent)
		{
			/* trees serve inference: the backward pass knows only chains */
			if (keep)
				return pt_fail(PT_ERR_ARGUMENT, "decoder sequence %d is a tree, which only "
							   "inference supports", s);
			if (validate_tree(&dec[s], s, &path_len) != 0)
				return -1;
			z->dec_tree = true;
		}
		for (int i = 0; i < dec[s].n_ids; i++)
			if (dec[s].ids[i] < 0 || dec[s].ids[i] >= c->vocab_size)
				return pt_fail(PT_ERR_ARGUMENT, "token id %d is outside the vocabulary [0, %d)",
							   dec[s].ids[i], c->vocab_size);
		te = (size_t) enc[dec[s].enc].prompt_len + enc[dec[s].enc].n_ids;
		z->Nd += (size_t) dec[s].n_ids;
		z->dec_self_probs += H * (size_t) dec[s].n_ids * dec[s].n_ids;
		z->dec_cross_probs += H * (size_t) dec[s].n_ids * te;
		z->cross_pairs += (size_t) dec[s].n_ids * te;
		if ((size_t) dec[s].n_ids * te > z->cross_block)
			z->cross_block = (size_t) dec[s].n_ids * te;
		/* decoder self-attention (Td x Td) and cross-attention (Td x Te); backward only, so chains */
		if ((size_t) dec[s].n_ids * dec[s].n_ids > z->dscores)
			z->dscores = (size_t) dec[s].n_ids * dec[s].n_ids;
		if ((size_t) dec[s].n_ids * te > z->dscores)
			z->dscores = (size_t) dec[s].n_ids * te;
		if (path_len > z->dec_max)
			z->dec_max = path_len;
	}
	/* tree self-attention keeps no probabilities (pt_tree_attention_forward) */
	if (z->dec_tree)
		z->dec_self_probs = 0;
	if (z->N > PT_MAX_ROWS || z->Nd > PT_MAX_ROWS)
		return pt_fail(PT_ERR_ARGUMENT, "a batch may hold at most %d tokens", PT_MAX_ROWS);
	z->rows = z->N > z->Nd ? z->N : z->Nd;
	z->cross_absorbed = n_dec > 0 && pt_cross_absorb_pays(c->num_heads, c->d_kv, c->d_model,
														   z->N, z->Nd, z->cross_pairs,
														   pass_math(m, keep));
	/* its score gradients come in blocks of all heads of a sequence: [Td * H, Te] */
	if (z->cross_absorbed && H * z->cross_block > z->dscores)
		z->dscores = H * z->cross_block;
	return 0;
}

/*
 * Carves every buffer from the arena.  Runs twice: once counting (arena base
 * NULL, pointers stay NULL, structs go to a dummy) and once for real.
 */
static void
carve(PtPass *p, PtArena *a, const PassSizes *z)
{
	const PtConfig *c = &p->model->cfg;
	size_t		d = c->d_model,
				H = c->num_heads,
				I = (size_t) pt_config_inner(c),
				F = c->d_ff;
	int			enc_sets = p->keep ? c->num_layers : 1;
	int			dec_sets = p->keep ? c->num_decoder_layers : 1;
	PtEncLayerActs enc_dummy;
	PtDecLayerActs dec_dummy;
	int			threads = omp_get_max_threads();

	p->enc_off = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->enc_len = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->dec_off = pt_arena_bytes(a, sizeof(int) * (p->n_dec + 1));
	p->dec_len = pt_arena_bytes(a, sizeof(int) * (p->n_dec + 1));
	if (z->dec_tree)
	{
		p->dec_parent = pt_arena_bytes(a, sizeof(int) * (z->Nd + 1));
		p->dec_depth = pt_arena_bytes(a, sizeof(int) * (z->Nd + 1));
	}
	/* attention layouts: begin/end ranges and probability offsets */
	p->enc_self.kv_q_begin = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->enc_self.kv_q_end = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->enc_self.p_off = pt_arena_bytes(a, sizeof(size_t) * p->n_enc);
	p->dec_self.kv_q_begin = pt_arena_bytes(a, sizeof(int) * (p->n_dec + 1));
	p->dec_self.kv_q_end = pt_arena_bytes(a, sizeof(int) * (p->n_dec + 1));
	p->dec_self.p_off = pt_arena_bytes(a, sizeof(size_t) * (p->n_dec + 1));
	p->dec_cross.kv_q_begin = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->dec_cross.kv_q_end = pt_arena_bytes(a, sizeof(int) * p->n_enc);
	p->dec_cross.p_off = pt_arena_bytes(a, sizeof(size_t) * (p->n_dec + 1));
	p->enc_self.bias = pt_arena_floats(a, (size_t) c->num_heads * (2 * z->enc_max - 1));
	p->dec_self.bias = pt_arena_floats(a, (size_t) c->num_heads * (2 * (z->dec_max ? z->dec_max : 1) - 1));

	p->enc = pt_arena_bytes(a, sizeof(PtEncLayerActs) * c->num_layers);
	for (int l = 0; l < enc_sets; l++)
	{
		PtEncLayerActs *e = p->enc ? &p->enc[l] : &enc_dummy;

		e->x = pt_arena_floats(a, z->N * d);
		e->rstd_attn = pt_arena_floats(a, z->N);
		e->q = pt_arena_floats(a, z->N * I);
		e->k = pt_arena_floats(a, z->N * I);
		e->v = pt_arena_floats(a, z->N * I);
		e->probs = pt_arena_floats(a, z->enc_probs);
		/* without backward, the residual stream updates in place */
		e->x_mid = p->keep ? pt_arena_floats(a, z->N * d) : e->x;
		e->rstd_ff = pt_arena_floats(a, z->N);
		e->h0 = pt_arena_floats(a, z->N * F);
		e->h1 = c->gated ? pt_arena_floats(a, z->N * F) : NULL;
	}
	p->dec = pt_arena_bytes(a, sizeof(PtDecLayerActs) * c->num_decoder_layers);
	for (int l = 0; l < dec_sets; l++)
	{
		PtDecLayerActs *e = p->dec ? &p->dec[l] : &dec_dummy;

		e->y = pt_arena_floats(a, z->Nd * d);
		/* (y_mid1 and y_mid2 below alias y when there is no backward pass) */
		e->rstd_self = pt_arena_floats(a, z->Nd);
		e->q = pt_arena_floats(a, z->Nd * I);
		e->k = pt_arena_floats(a, z->Nd * I);
		e->v = pt_arena_floats(a, z->Nd * I);
		e->probs_self = pt_arena_floats(a, z->dec_self_probs);
		e->y_mid1 = p->keep ? pt_arena_floats(a, z->Nd * d) : e->y;
		e->rstd_cross = pt_arena_floats(a, z->Nd);
		e->q_cross = pt_arena_floats(a, z->Nd * I);
		e->k_cross = z->cross_absorbed ? NULL : pt_arena_floats(a, z->N * I);
		e->v_cross = z->cross_absorbed ? NULL : pt_arena_floats(a, z->N * I);
		e->qk_cross = z->cross_absorbed ? pt_arena_floats(a, z->Nd * H * d) : NULL;
		e->probs_cross = pt_arena_floats(a, z->dec_cross_probs);
		e->y_mid2 = p->keep ? pt_arena_floats(a, z->Nd * d) : e->y;
		e->rstd_ff = pt_arena_floats(a, z->Nd);
		e->h0 = pt_arena_floats(a, z->Nd * F);
		e->h1 = c->gated ? pt_arena_floats(a, z->Nd * F) : NULL;
	}
	if (p->enc)
		for (int l = enc_sets; l < c->num_layers; l++)
			p->enc[l] = p->enc[0];
	if (p->dec)
		for (int l = dec_sets; l < c->num_decoder_layers; l++)
			p->dec[l] = p->dec[0];

	p->enc_final_in = p->keep ? pt_arena_floats(a, z->N * d) : (p->enc ? p->enc[0].x : NULL);
	p->enc_rstd_final = pt_arena_floats(a, z->N);
	p->enc_out = pt_arena_floats(a, z->N * d);
	p->dec_final_in = p->keep ? pt_arena_floats(a, z->Nd * d) : (p->dec ? p->dec[0].y : NULL);
	p->dec_rstd_final = pt_arena_floats(a, z->Nd);
	p->dec_out = pt_arena_floats(a, z->Nd * d);

	p->ln = pt_arena_floats(a, z->rows * d);
	p->ctx = pt_arena_floats(a, z->rows * I);
	p->act = pt_arena_floats(a, z->rows * F);
	p->sub = pt_arena_floats(a, z->rows * d);
	if (z->cross_absorbed)
	{
		p->cross_stack = pt_arena_floats(a, z->Nd * H * I);
		p->cross_pe = pt_arena_floats(a, z->Nd * H * d);
	}

	if (p->keep)
	{
		p->g = pt_arena_floats(a, z->rows * d);
		p->g_ln = pt_arena_floats(a, z->rows * d);
		p->g_ctx = pt_arena_floats(a, z->rows * I);
		p->g_q = pt_arena_floats(a, z->rows * I);
		p->g_k = pt_arena_floats(a, z->rows * I);
		p->g_v = pt_arena_floats(a, z->rows * I);
		p->g_act = pt_arena_floats(a, z->rows * F);
		p->g_h0 = pt_arena_floats(a, z->rows * F);
		p->g_h1 = c->gated ? pt_arena_floats(a, z->rows * F) : NULL;
		if (!z->cross_absorbed)
		{
			p->g_k_cross = pt_arena_floats(a, z->N * I);
			p->g_v_cross = pt_arena_floats(a, z->N * I);
		}
		p->d_enc_out = pt_arena_floats(a, z->N * d);
		p->d_x0 = pt_arena_floats(a, z->N * d);
		/* one dS block per thread, as large as the largest of all three layouts */
		p->enc_self.dscores = pt_arena_floats(a, z->dscores * threads);
		p->enc_self.dscores_stride = z->dscores;
		p->enc_self.dscores_threads = threads;
	}
}

/* Fills the packing arrays and attention layouts (after the real carve). */
static void
fill_layouts(PtPass *p, const PassSizes *z)
{
	const PtConfig *c = &p->model->cfg;
	size_t		H = (size_t) c->num_heads;
	int			row = 0;
	size_t		probs = 0;

	for (int s = 0; s < p->n_enc; s++)
	{
		p->enc_off[s] = row;
		p->enc_len[s] = p->enc_seqs[s].prompt_len + p->enc_seqs[s].n_ids;
		row += p->enc_len[s];
		p->enc_self.kv_q_begin[s] = s;
		p->enc_self.kv_q_end[s] = s + 1;
		p->enc_self.p_off[s] = probs;
		probs += H * p->enc_len[s] * p->enc_len[s];
	}
	p->enc_rows = row;
	p->enc_max = z->enc_max;

	row = 0;
	probs = 0;
	for (int s = 0; s < p->n_dec; s++)
	{
		p->dec_off[s] = row;
		p->dec_len[s] = p->dec_seqs[s].n_ids;
		row += p->dec_len[s];
		p->dec_self.kv_q_begin[s] = s;
		p->dec_self.kv_q_end[s] = s + 1;
		p->dec_self.p_off[s] = probs;
		probs += H * p->dec_len[s] * p->dec_len[s];
	}
	p->dec_rows = row;
	p->dec_max = z->dec_max;
	p->dec_tree = z->dec_tree;
	p->cross_absorbed = z->cross_absorbed;
	for (int s = 0; p->dec_tree && s < p->n_dec; s++)
	{
		/* rows of a chain are each other's parents too */
		const int  *parent = p->dec_seqs[s].parent;
		int			off = p->dec_off[s];

		for (int i = 0; i < p->dec_len[s]; i++)
		{
			int			up = parent ? parent[i] : i - 1;

			p->dec_parent[off + i] = up < 0 ? -1 : off + up;
			p->dec_depth[off + i] = up < 0 ? 0 : p->dec_depth[off + up] + 1;
		}
	}

	/* decoder sequences are sorted by encoder sequence: find each one's range */
	probs = 0;
	for (int g = 0, s = 0; g < p->n_enc; g++)
	{
		p->dec_cross.kv_q_begin[g] = s;
		while (s < p->n_dec && p->dec_seqs[s].enc == g)
		{
			p->dec_cross.p_off[s] = probs;
			probs += H * p->dec_len[s] * p->enc_len[g];
			s++;
		}
		p->dec_cross.kv_q_end[g] = s;
	}

	p->enc_self.n_kv = p->n_enc;
	p->enc_self.q_off = p->enc_self.kv_off = p->enc_off;
	p->enc_self.q_len = p->enc_self.kv_len = p->enc_len;
	p->enc_self.bias_max_len = z->enc_max;
	p->enc_self.causal = false;
	/* the backward pass needs the probabilities themselves; inference does not */
	p->enc_self.normalize = p->dec_self.normalize = p->dec_cross.normalize = p->keep;
	/*
	 * bf16 and int8 inference: the encoder's per-head products in bf16 too
	 * (the decoder's rows are few).  int8's linear products are coarser
	 * than bf16 rounding already.
	 */
	p->enc_self.bf16 = !p->keep && (p->math == PT_MATH_BF16 || p->math == PT_MATH_INT8) &&
		pt_attention_bf16_supported(c->d_kv);
	p->dec_self.bf16 = p->dec_cross.bf16 = false;

	p->dec_self.n_kv = p->n_dec;
	p->dec_self.q_off = p->dec_self.kv_off = p->dec_off;
	p->dec_self.q_len = p->dec_self.kv_len = p->dec_len;
	p->dec_self.bias_max_len = z->dec_max ? z->dec_max : 1;
	p->dec_self.causal = true;

	p->dec_cross.q_off = p->dec_off;
	p->dec_cross.q_len = p->dec_len;
	p->dec_cross.n_kv = p->n_enc;
	p->dec_cross.kv_off = p->enc_off;
	p->dec_cross.kv_len = p->enc_len;
	p->dec_cross.bias = NULL;
	p->dec_cross.causal = false;

	/* one dS area serves all three layouts: they never run concurrently */
	p->dec_self.dscores = p->dec_cross.dscores = p->enc_self.dscores;
	p->dec_self.dscores_stride = p->dec_cross.dscores_stride = p->enc_self.dscores_stride;
	p->dec_self.dscores_threads = p->dec_cross.dscores_threads = p->enc_self.dscores_threads;

	pt_position_bias_table(p->model->enc_rel_bias, c->num_heads, c->rel_buckets,
						   c->rel_max_distance, true, z->enc_max, p->enc_self.bias);
	if (p->n_dec > 0)
		pt_position_bias_table(p->model->dec_rel_bias, c->num_heads, c->rel_buckets,
							   c->rel_max_distance, false, z->dec_max, p->dec_self.bias);
}

int
pt_pass_begin(PtPass *p, const PtModel *model, PtArena *arena,
			  const PtEncoderSeq *enc, int n_enc,
			  const PtDecoderSeq *dec, int n_dec, bool keep)
{
	PassSizes	z;
	PtArena		counter = {0};

	memset(p, 0, sizeof(*p));
	if (validate(model, enc, n_enc, dec, n_dec, keep, &z) != 0)
		return -1;
	p->model = model;
	p->keep = keep;
	p->math = pass_math(model, keep);
	p->enc_seqs = enc;
	p->n_enc = n_enc;
	p->dec_seqs = dec;
	p->n_dec = n_dec;

	carve(p, &counter, &z);
	if (pt_arena_reserve(arena, counter.used) != 0)
		return -1;
	carve(p, arena, &z);
	fill_layouts(p, &z);
	return 0;
}

void
pt_pass_prompt_grad(const PtPass *p, int s, float *out, bool accumulate)
{
	size_t		d = p->model->cfg.d_model;
	size_t		n = (size_t) p->enc_seqs[s].prompt_len * d;
	const float *g = p->d_x0 + (size_t) p->enc_off[s] * d;

	if (accumulate)
		for (size_t i = 0; i < n; i++)
			out[i] += g[i];
	else
		memcpy(out, g, n * sizeof(float));
}

int
pt_yield(const PtYield *y)
{
	if (y->fn == NULL || y->fn(y->arg) == 0)
		return 0;
	return pt_fail(PT_ERR_CANCELLED, "the pass was stopped between two layers");
}
