/*
 * dtype.h - conversions between the float formats found in checkpoints.
 */
#ifndef PT_DTYPE_H
#define PT_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float
pt_bf16_to_f32(uint16_t h)
{
	uint32_t	bits = (uint32_t) h << 16;
	float		f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Round to nearest even, as PyTorch and oneDNN do; NaN stays NaN. */
static inline uint16_t
pt_f32_to_bf16(float f)
{
	uint32_t	bits;

	memcpy(&bits, &f, sizeof(bits));
	if ((bits & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((bits >> 16) | 0x40);
	bits += 0x7fffu + ((bits >> 16) & 1u);
	return (uint16_t) (bits >> 16);
}

float		pt_f16_to_f32(uint16_t h);

/* Converts n values of a checkpoint dtype (F32, F16 or BF16, unaligned) to f32. */
void		pt_convert_to_f32(int dtype, const void *src, size_t n, float *dst);

/* The same to bfloat16 (F32 and F16 rounded to nearest even; BF16 copied). */
void		pt_convert_to_bf16(int dtype, const void *src, size_t n, uint16_t *dst);

#endif
