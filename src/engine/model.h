/*
 * model.h - a frozen T5 model loaded from a Hugging Face checkpoint directory.
 *
 * A checkpoint directory holds config.json, model.safetensors (or sharded
 * model-XXXXX-of-YYYYY.safetensors files listed by model.safetensors.index.json)
 * and spiece.model.  The weight matrices are kept in the model's precision
 * (linear.h, PtLinear): in fp32, F32 tensors are used in place from the
 * mapping and F16 / BF16 ones converted once; in bf16, every matrix is
 * packed once, straight from the file's data, and no fp32 copy exists.
 * Layer norms and relative-position biases are always fp32.  The embedding
 * is a PtLinear read row by row (pt_model_embed_rows, always fp32 rows): in
 * fp32 its w as for a weight matrix; in bf16 no copy at all, the rows are
 * converted from the checkpoint's mapping as they are looked up (only the
 * pages of the tokens used become resident).
 *
 * Shapes (H = num_heads, I = H * d_kv, d = d_model, F = d_ff, V = vocab_size):
 *   embed                [V, d]      shared.weight
 *   enc_rel_bias         [buckets, H] encoder.block.0...relative_attention_bias
 *   attention q, k, v    [I, d]      o [d, I]
 *   feed-forward wi(_0/_1) [F, d]    wo [d, F]
 *   layer norms          [d]
 *   lm_head              [V, d]      (the embedding when tie_word_embeddings)
 */
#ifndef PT_MODEL_H
#define PT_MODEL_H

#include <stdint.h>

#include "config.h"
#include "linear.h"
#include "tokenizer.h"

typedef struct PtAttentionWeights
{
	PtLinear	q,
				k,
				v,
				o;
} PtAttentionWeights;

typedef struct PtFeedForwardWeights
{
	PtLinear	wi0;			/* "wi" for non-gated models */
	PtLinear	wi1;			/* gated models only */
	PtLinear	wo;
} PtFeedForwardWeights;

typedef struct PtEncoderLayer
{
	const float *ln_attn;
	PtAttentionWeights attn;
	const float *ln_ff;
	PtFeedForwardWeights ff;
} PtEncoderLayer;

typedef struct PtDecoderLayer
{
	const float *ln_self;
	PtAttentionWeights self;
	const float *ln_cross;
	PtAttentionWeights cross;
	const float *ln_ff;
	PtFeedForwardWeights ff;
} PtDecoderLayer;

#define PT_FINGERPRINT_BYTES 16

typedef struct PtModel
{
	PtConfig	cfg;
	char	   *dir;
	PtTokenizer *tokenizer;

	PtLinear	embed;			/* [V, d]: read with pt_model_embed_rows */
	const float *enc_rel_bias;	/* [buckets, H] */
	const float *dec_rel_bias;	/* [buckets, H] */
	PtEncoderLayer *enc;		/* [num_layers] */
	PtDecoderLayer *dec;		/* [num_decoder_layers] */
	const float *enc_final_ln;	/* [d] */
	const float *dec_final_ln;	/* [d] */
	PtLinear	lm_head;		/* [V, d] */
	PtMath		math;			/* precision of the products (see pt_model_set_math) */
	float		lm_scale;		/* d^-0.5 when tied, else 1 */

	uint8_t		fingerprint[PT_FINGERPRINT_BYTES];	/* hash of config, vocabulary and weights */
	int64_t		n_parameters;
	size_t		file_bytes;		/* total size of the safetensors files */

	/* ownership: mapped files and converted tensors */
	struct StFile *files;
	int			n_files;
	void	  **owned;
	int			n_owned;
	int			cap_owned;
} PtModel;

/* Loads a checkpoint directory; NULL with an error naming the file and tensor. */
PtModel    *pt_model_load(const char *dir);

/*
 * The same, with the weights in a precision from the start: for bf16, no
 * fp32 copy of the model ever exists (peak memory: the bf16 weights plus one
 * tensor).  Where the precision cannot be had, the model loads in fp32 and
 * model->math says so (pt_model_set_math gives the reason).
 */
PtModel    *pt_model_load_math(const char *dir, PtMath math);
void		pt_model_free(PtModel *model);

/*
 * out[n, d] = the embedding rows of ids[n], in fp32 whatever the model's
 * precision (the checkpoint's values exactly: a BF16 or F16 row converts
 * without rounding).
 */
static inline void
pt_model_embed_rows(const PtModel *model, const int32_t *ids, int n, float *out)
{
	for (int i = 0; i < n; i++)
		pt_linear_row(&model->embed, ids[i], out + (size_t) i * model->cfg.d_model);
}

/*
 * Switches the model between fp32, bfloat16 and int8.  bf16 packs every
 * weight matrix (lm_head too) in bfloat16 and drops the fp32 weights:
 * inference and training then both multiply in bf16 with fp32 accumulation
 * (mixed precision; the prompt, its gradient, the optimizer, norms and
 * softmax stay fp32).  fp32 makes the fp32 weights again: exact, and what
 * training uses in fp32 and int8.  int8 quantises an s8 copy with one scale
 * per output channel for inference.  It fails (and the model computes in
 * fp32) on CPUs without bfloat16 instructions (or, for int8, without
 * oneDNN's int8 matmul).
 */
int			pt_model_set_math(PtModel *model, PtMath math);

/*
 * The model as one JSON object (what ptune.model_info() shows as config):
 * name, fingerprint, sizes, the config fields, threads, BLAS kernels and
 * precision.  Built with jansson, so names from config.json are escaped.
 * malloc'd (free() it); NULL with an error on failure.
 */
char	   *pt_model_info_json(const PtModel *model, double load_seconds);

/*
 * The kernels each precision's products run on, as a JSON object (the
 * "kernels" of pt_model_info_json, and of ptune bench): fp32's measured
 * choice for forward and backward products, oneDNN's kernel names for bf16
 * and int8 (null where the CPU lacks them), the CPU model and its flags;
 * and "attention": the kernel of the encoder's per-head attention products
 * in bf16 and int8 inference for this model's head size, "bf16"
 * (attention_bf16.c: AVX512-BF16, heads divisible by 16) or "fp32"
 * (small_gemm.c, as every other attention runs).
 */
struct json_t *pt_kernels_json(const PtModel *model);

/* 32 lowercase hex digits of the fingerprint plus NUL */
void		pt_model_fingerprint_hex(const PtModel *model, char out[2 * PT_FINGERPRINT_BYTES + 1]);

#endif
