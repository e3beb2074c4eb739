/*
 * safetensors.h - read-only access to Hugging Face .safetensors files.
 *
 * Format: an 8-byte little-endian header length N, then N bytes of JSON
 * mapping tensor names to {dtype, shape, data_offsets:[begin,end]}, then the
 * raw tensor bytes (offsets are relative to the end of the header).  The file
 * is mmap'ed; every offset and size is validated against the file size when
 * the file is opened, so later reads can never fall outside the mapping.
 */
#ifndef PT_SAFETENSORS_H
#define PT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum PtDType
{
	PT_DTYPE_F32,
	PT_DTYPE_F16,
	PT_DTYPE_BF16,
	PT_DTYPE_UNSUPPORTED		/* any other dtype: an error only if the tensor is used */
} PtDType;

#define ST_MAX_DIMS 4

typedef struct StTensor
{
	char	   *name;
	PtDType		dtype;
	char		dtype_name[16];	/* as written in the file, for error messages */
	int			ndim;
	int64_t		shape[ST_MAX_DIMS];
	int64_t		numel;
	const void *data;			/* inside the mapping */
	size_t		nbytes;
} StTensor;

typedef struct StFile
{
	char	   *path;
	void	   *map;
	size_t		map_size;
	size_t		header_size;	/* JSON bytes */
	const char *header;			/* inside the mapping, header_size bytes */
	StTensor   *tensors;
	int			n_tensors;
} StFile;

/* Opens and validates a file; on failure returns -1 with the path in the message. */
int			st_open(const char *path, StFile *out);
/* The validation itself, on bytes the caller keeps alive (out zeroed first; st_close after). */
int			st_parse(const void *data, size_t size, const char *path, StFile *out);
void		st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);

size_t		pt_dtype_size(PtDType dtype);
const char *pt_dtype_name(PtDType dtype);

#endif
