/*
 * model.h - a frozen T5 model loaded from a Hugging Face checkpoint directory.
 *
 * A checkpoint directory holds config.json, model.safetensors (or sharded
 * model-XXXXX-of-YYYYY.safetensors files listed by model.safetensors.index.json)
 * and spiece.model.  F32 tensors are used in place from the mapping; F16 and
 * BF16 tensors are converted to F32 once at load time.
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

	const float *embed;			/* [V, d] */
	const float *enc_rel_bias;	/* [buckets, H] */
	const float *dec_rel_bias;	/* [buckets, H] */
	PtEncoderLayer *enc;		/* [num_layers] */
	PtDecoderLayer *dec;		/* [num_decoder_layers] */
	const float *enc_final_ln;	/* [d] */
	const float *dec_final_ln;	/* [d] */
	PtLinear	lm_head;		/* [V, d] */
	PtMath		math;			/* precision of inference (see pt_model_set_math) */
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
void		pt_model_free(PtModel *model);

/*
 * Switches inference between fp32, bfloat16 and int8 (training always
 * computes in fp32, whatever the model's precision).  bfloat16 prepares a
 * bfloat16 copy of every weight matrix, int8 an s8 copy with one scale per
 * output channel; it fails (and the model stays fp32) on CPUs without
 * bfloat16 instructions (or, for int8, without oneDNN's int8 matmul).
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
 * and int8 (null where the CPU lacks them), the CPU model and its flags.
 */
struct json_t *pt_kernels_json(void);

/* 32 lowercase hex digits of the fingerprint plus NUL */
void		pt_model_fingerprint_hex(const PtModel *model, char out[2 * PT_FINGERPRINT_BYTES + 1]);

#endif
