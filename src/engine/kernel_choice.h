/*
 * kernel_choice.h - which library runs the fp32 products, by measurement.
 *
 * When a model loads, pt_kernels_choose() times OpenBLAS sgemm and oneDNN's
 * f32 matmul on the model's own weight shapes, forward (x . W^T) and
 * backward (dy . W) separately, and the faster runs from then on.  No list
 * of CPU models: what this machine, these libraries and this thread count
 * do is what counts.  The result is cached in a file keyed by the CPU model,
 * its flags, the libraries' versions, the thread count and the shapes:
 *   $PTUNE_CACHE_DIR/kernels.tsv, else $XDG_CACHE_HOME/ptune/kernels.tsv,
 *   else $HOME/.cache/ptune/kernels.tsv
 * A cache that cannot be read or written (read-only home) only means
 * measuring again at the next load (about 0.1-0.5 s).
 * PTUNE_FP32_KERNEL=openblas or onednn forces a kernel (diagnosis, tests).
 *
 * bf16 and int8 products have one candidate each (oneDNN; it picks AMX,
 * AVX512-BF16 or VNNI code itself); pt_dnnl_kernel() names what it picked.
 * What is measured for them (and for fp32 where oneDNN runs it) is the
 * piece size: oneDNN's products run in pieces of at most so many rows
 * (linear_dnnl.c), and the best size depends on the machine (256 rows on a
 * Xeon with AMX, whole products on AVX-512 without it).  Each candidate is
 * timed on one product of 2048 rows with the model's largest weight shape
 * (about 0.1-0.3 s for flan-t5-small), cached as the kernels are;
 * PTUNE_PIECE_ROWS forces one size.
 */
#ifndef PT_KERNEL_CHOICE_H
#define PT_KERNEL_CHOICE_H

#include "linear.h"

/* The kernel of fp32 forward or backward products (OpenBLAS until a choice is made). */
PtKernel	pt_fp32_kernel(bool backward);

/* "openblas" or "onednn" */
const char *pt_kernel_name(PtKernel kernel);

/*
 * Chooses the fp32 kernels for the weight shapes of lins[0 .. n-1] (shapes
 * repeat: each distinct one is measured once).  Never fails: without a
 * measurement the choice stays OpenBLAS.
 */
void		pt_kernels_choose(const PtLinear *const *lins, int n);

/*
 * How the current choice was made: "measured", "cached", "forced by
 * PTUNE_FP32_KERNEL" or "default"; and the GFLOP/s measured (0 when not
 * measured) of a kernel and direction at the model's shapes.
 */
const char *pt_kernels_source(void);
double		pt_kernels_gflops(PtKernel kernel, bool backward);

/*
 * The piece sizes (pt_dnnl_piece_rows) tried per precision, how the current
 * ones were chosen ("measured", "cached", "forced by PTUNE_PIECE_ROWS" or
 * "default") and the GFLOP/s each candidate i measured (0: not measured).
 */
#define N_PIECE_CANDIDATES 3
int			pt_piece_candidate(int i);
const char *pt_pieces_source(void);
double		pt_piece_gflops(PtMath math, int i);

#endif
