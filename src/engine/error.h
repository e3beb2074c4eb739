/*
 * error.h - how the engine reports failure.
 *
 * Engine functions return 0 (or a non-NULL pointer) on success and -1 (or NULL)
 * on failure, after recording a message and a category with pt_fail().  The
 * message is kept per thread, so callers read it with pt_error_message() right
 * after the failing call.  The category lets the PostgreSQL layer pick an
 * SQLSTATE without parsing text.
 */
#ifndef PT_ERROR_H
#define PT_ERROR_H

typedef enum PtErrorKind
{
	PT_OK = 0,
	PT_ERR_IO,			/* a file could not be opened or read */
	PT_ERR_FORMAT,		/* a file or blob is malformed (checkpoint, prompt, CSV) */
	PT_ERR_ARGUMENT,	/* the caller passed an invalid value */
	PT_ERR_MISMATCH,	/* a prompt does not belong to the loaded model */
	PT_ERR_NOMEM,		/* an allocation failed */
	PT_ERR_CANCELLED,	/* a callback asked to stop */
	PT_ERR_NUMERIC,		/* a loss or gradient came out NaN or infinite */
	PT_ERR_INTERNAL		/* a bug: an invariant did not hold */
} PtErrorKind;

/* Records an error for the current thread; always returns -1 for convenience. */
int			pt_fail(PtErrorKind kind, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* Prefixes the current error message with more context ("loading X: ..."). */
int			pt_fail_context(const char *fmt,...)
			__attribute__((format(printf, 1, 2)));

const char *pt_error_message(void);
PtErrorKind pt_error_kind(void);
void		pt_clear_error(void);

/* malloc/calloc that record PT_ERR_NOMEM on failure (and refuse size overflow). */
void	   *pt_malloc(size_t size);
void	   *pt_calloc(size_t count, size_t size);
char	   *pt_strdup(const char *s);

/*
 * A scratch buffer that only grows (the kernels' per-thread buffers): *buf
 * is realloc'ed to hold at least `bytes`, *cap is its size in bytes.
 * Returns *buf, or NULL if it could not grow (*buf and *cap unchanged, no
 * error recorded: the callers fall back to a path that needs no buffer).
 */
void	   *pt_grow(void **buf, size_t *cap, size_t bytes);

#endif
