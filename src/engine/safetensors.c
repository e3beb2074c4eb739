/*
 * safetensors.c - open, validate and index a .safetensors file (see header).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"
#include "safetensors.h"

/* A header larger than this is certainly not a T5 checkpoint. */
#define ST_MAX_HEADER (100u * 1024 * 1024)

size_t
pt_dtype_size(PtDType dtype)
{
	switch (dtype)
	{
		case PT_DTYPE_F32:
			return 4;
		case PT_DTYPE_F16:
		case PT_DTYPE_BF16:
			return 2;
		default:
			return 0;
	}
}

const char *
pt_dtype_name(PtDType dtype)
{
	switch (dtype)
	{
		case PT_DTYPE_F32:
			return "F32";
		case PT_DTYPE_F16:
			return "F16";
		case PT_DTYPE_BF16:
			return "BF16";
		default:
			return "unsupported";
	}
}

static PtDType
parse_dtype(const char *s)
{
	if (strcmp(s, "F32") == 0)
		return PT_DTYPE_F32;
	if (strcmp(s, "F16") == 0)
		return PT_DTYPE_F16;
	if (strcmp(s, "BF16") == 0)
		return PT_DTYPE_BF16;
	return PT_DTYPE_UNSUPPORTED;
}

/* Size in bytes of the elements of an unsupported dtype, to check its extent. */
static size_t
any_dtype_size(const char *s)
{
	static const struct
	{
		const char *name;
		size_t		size;
	}			sizes[] = {
		{"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4},
		{"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
		{"F8_E4M3", 1}, {"F8_E5M2", 1},
	};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (strcmp(s, sizes[i].name) == 0)
			return sizes[i].size;
	return 0;
}

/* Parses one "name": {...} entry of the header into t; data_start is past the header. */
static int
parse_tensor(const StFile *f, const char *name, json_t *entry,
			 const unsigned char *data_start, size_t data_size, StTensor *t)
{
	json_t	   *dtype = json_object_get(entry, "dtype");
	json_t	   *shape = json_object_get(entry, "shape");
	json_t	   *offsets = json_object_get(entry, "data_offsets");
	size_t		elem;
	int64_t		begin,
				end;

	if (!json_is_object(entry) || !json_is_string(dtype) || !json_is_array(shape) ||
		!json_is_array(offsets) || json_array_size(offsets) != 2)
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has a malformed header entry "
					   "(needs dtype, shape and data_offsets)", f->path, name);

	t->name = pt_strdup(name);
	if (t->name == NULL)
		return -1;
	snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", json_string_value(dtype));
	t->dtype = parse_dtype(t->dtype_name);
	elem = t->dtype == PT_DTYPE_UNSUPPORTED ? any_dtype_size(t->dtype_name) : pt_dtype_size(t->dtype);
	if (elem == 0)
		elem = 1;				/* unknown dtype: we only check that the extent fits */

	if (json_array_size(shape) > ST_MAX_DIMS)
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has %zu dimensions (at most %d supported)",
					   f->path, name, json_array_size(shape), ST_MAX_DIMS);
	t->ndim = (int) json_array_size(shape);
	t->numel = 1;
	for (int i = 0; i < t->ndim; i++)
	{
		json_t	   *dim = json_array_get(shape, i);
		json_int_t	v = json_is_integer(dim) ? json_integer_value(dim) : -1;

		if (v < 0 || v > (1LL << 40))
			return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has an invalid shape", f->path, name);
		t->shape[i] = v;
		if (v != 0 && t->numel > (INT64_C(1) << 50) / v)
			return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" is impossibly large", f->path, name);
		t->numel *= v;
	}

	if (!json_is_integer(json_array_get(offsets, 0)) || !json_is_integer(json_array_get(offsets, 1)))
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has non-integer data_offsets", f->path, name);
	begin = json_integer_value(json_array_get(offsets, 0));
	end = json_integer_value(json_array_get(offsets, 1));
	if (begin < 0 || end < begin)
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has invalid data_offsets [%lld, %lld]",
					   f->path, name, (long long) begin, (long long) end);
	if ((uint64_t) end > data_size)
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" ends at byte %lld of the data section, "
					   "but the file holds only %zu bytes of data (truncated file?)",
					   f->path, name, (long long) end, data_size);
	if ((uint64_t) (end - begin) != (uint64_t) t->numel * elem)
		return pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" occupies %lld bytes but its shape and dtype %s need %llu",
					   f->path, name, (long long) (end - begin), t->dtype_name,
					   (unsigned long long) t->numel * elem);
	t->data = data_start + begin;
	t->nbytes = (size_t) (end - begin);
	return 0;
}

/*
 * Validates and indexes the bytes of a safetensors file, data[0..size), which
 * the caller keeps alive (st_open's mapping, or a fuzzer's buffer).
 */
int
st_parse(const void *data, size_t size, const char *path, StFile *out)
{
	uint64_t	header_size = 0;
	json_t	   *root = NULL;
	json_error_t jerr;
	const char *key;
	json_t	   *value;
	const unsigned char *bytes = data;

	if (out->path == NULL && (out->path = pt_strdup(path)) == NULL)
		return -1;
	if (size < 8)
		return pt_fail(PT_ERR_FORMAT, "%s: file is too short (%zu bytes) to be safetensors", path, size);
	for (int i = 0; i < 8; i++)
		header_size |= (uint64_t) bytes[i] << (8 * i);
	if (header_size > ST_MAX_HEADER || header_size > size - 8)
		return pt_fail(PT_ERR_FORMAT, "%s: header length %llu does not fit in a file of %zu bytes "
					   "(truncated or not a safetensors file)",
					   path, (unsigned long long) header_size, size);
	out->header_size = (size_t) header_size;
	out->header = (const char *) bytes + 8;

	root = json_loadb(out->header, out->header_size, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root))
	{
		pt_fail(PT_ERR_FORMAT, "%s: header is not a JSON object: %s (at byte %d)",
				path, root ? "wrong type" : jerr.text, root ? 0 : jerr.position);
		json_decref(root);
		return -1;
	}
	out->tensors = pt_calloc(json_object_size(root), sizeof(StTensor));
	if (out->tensors == NULL)
	{
		json_decref(root);
		return -1;
	}
	json_object_foreach(root, key, value)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		/* count it first, so that st_close frees its name even if it is invalid */
		if (parse_tensor(out, key, value, bytes + 8 + out->header_size,
						 size - 8 - out->header_size, &out->tensors[out->n_tensors++]) != 0)
		{
			json_decref(root);
			return -1;
		}
	}
	json_decref(root);
	return 0;
}

int
st_open(const char *path, StFile *out)
{
	struct stat st;
	int			fd;

	memset(out, 0, sizeof(*out));
	out->path = pt_strdup(path);
	if (out->path == NULL)
		return -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		pt_fail(PT_ERR_IO, "could not open \"%s\": %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		pt_fail(PT_ERR_IO, "\"%s\" is not a regular file", path);
		goto fail;
	}
	if (st.st_size < 8)
	{
		close(fd);
		pt_fail(PT_ERR_FORMAT, "%s: file is too short (%lld bytes) to be safetensors",
				path, (long long) st.st_size);
		goto fail;
	}
	out->map_size = (size_t) st.st_size;
	out->map = mmap(NULL, out->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (out->map == MAP_FAILED)
	{
		out->map = NULL;
		pt_fail(PT_ERR_IO, "could not map \"%s\": %s", path, strerror(errno));
		goto fail;
	}
	if (st_parse(out->map, out->map_size, path, out) == 0)
		return 0;

fail:
	st_close(out);
	return -1;
}

void
st_close(StFile *f)
{
	for (int i = 0; i < f->n_tensors; i++)
		free(f->tensors[i].name);
	free(f->tensors);
	if (f->map)
		munmap(f->map, f->map_size);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

const StTensor *
st_find(const StFile *f, const char *name)
{
	for (int i = 0; i < f->n_tensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}
