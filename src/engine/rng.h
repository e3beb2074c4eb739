/*
 * rng.h - a small seeded random number generator (xoshiro256**).
 *
 * Training must be reproducible for a given seed on every platform, so the
 * engine never uses rand() or time-based seeds.
 */
#ifndef PT_RNG_H
#define PT_RNG_H

#include <stdint.h>

typedef struct PtRng
{
	uint64_t	s[4];
} PtRng;

static inline uint64_t
pt_rng_splitmix(uint64_t *x)
{
	uint64_t	z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void
pt_rng_seed(PtRng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = pt_rng_splitmix(&seed);
}

static inline uint64_t
pt_rng_next(PtRng *r)
{
	uint64_t   *s = r->s;
	uint64_t	result = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return result;
}

/* uniform in [0, 1) with 53 random bits */
static inline double
pt_rng_uniform(PtRng *r)
{
	return (double) (pt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform integer in [0, n), n > 0 (Lemire's nearly divisionless method is overkill here) */
static inline uint64_t
pt_rng_below(PtRng *r, uint64_t n)
{
	uint64_t	limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t	x;

	do
		x = pt_rng_next(r);
	while (x >= limit);
	return x % n;
}

/* Fisher-Yates shuffle of n ints */
static inline void
pt_rng_shuffle(PtRng *r, int *a, int n)
{
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) pt_rng_below(r, (uint64_t) i + 1);
		int			t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

#endif
