/*
 * dtype.c - IEEE half and bfloat16 to float conversion.
 */
#include "dtype.h"
#include "safetensors.h"

float
pt_f16_to_f32(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000u) << 16;
	uint32_t	exp = (h >> 10) & 0x1fu;
	uint32_t	mant = h & 0x3ffu;
	uint32_t	bits;
	float		f;

	if (exp == 0)
	{
		if (mant == 0)
			bits = sign;
		else
		{
			/* subnormal half: normalise it */
			exp = 127 - 15 + 1;
			while ((mant & 0x400u) == 0)
			{
				mant <<= 1;
				exp--;
			}
			mant &= 0x3ffu;
			bits = sign | (exp << 23) | (mant << 13);
		}
	}
	else if (exp == 0x1f)
		bits = sign | 0x7f800000u | (mant << 13);	/* inf or NaN */
	else
		bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

void
pt_convert_to_f32(int dtype, const void *src, size_t n, float *dst)
{
	const unsigned char *p = src;

	switch ((PtDType) dtype)
	{
		case PT_DTYPE_F32:
			memcpy(dst, src, n * sizeof(float));
			break;
		case PT_DTYPE_BF16:
			for (size_t i = 0; i < n; i++)
			{
				uint16_t	h;

				memcpy(&h, p + 2 * i, 2);
				dst[i] = pt_bf16_to_f32(h);
			}
			break;
		case PT_DTYPE_F16:
			for (size_t i = 0; i < n; i++)
			{
				uint16_t	h;

				memcpy(&h, p + 2 * i, 2);
				dst[i] = pt_f16_to_f32(h);
			}
			break;
		default:
			break;
	}
}

void
pt_convert_to_bf16(int dtype, const void *src, size_t n, uint16_t *dst)
{
	const unsigned char *p = src;

	switch ((PtDType) dtype)
	{
		case PT_DTYPE_BF16:
			memcpy(dst, src, n * sizeof(uint16_t));
			break;
		case PT_DTYPE_F32:
			for (size_t i = 0; i < n; i++)
			{
				float		f;

				memcpy(&f, p + 4 * i, 4);
				dst[i] = pt_f32_to_bf16(f);
			}
			break;
		case PT_DTYPE_F16:
			for (size_t i = 0; i < n; i++)
			{
				uint16_t	h;

				memcpy(&h, p + 2 * i, 2);
				dst[i] = pt_f32_to_bf16(pt_f16_to_f32(h));
			}
			break;
		default:
			break;
	}
}
