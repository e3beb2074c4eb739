/*
 * unit.h - a minimal unit-test harness for the engine.
 *
 * A test is a function registered in main.c's table.  CHECK records a
 * failure (file:line and the expression) and lets the test go on; REQUIRE
 * also returns from the test.  SKIP(why) ends a test that cannot run here
 * (say, bfloat16 tests on a CPU without bfloat16 instructions): it is reported
 * and counted as skipped, never as passed.  The runner prints one line per
 * test and ends with "N passed, N failed, N skipped".
 *
 * Tests find their inputs through environment variables set by
 * test/run_unit.sh: PTUNE_TEST_MODELS (generated checkpoints) and
 * PTUNE_SHARED (the shared data folder).
 */
#ifndef PT_UNIT_H
#define PT_UNIT_H

#include <stdbool.h>
#include <stdio.h>

extern int	unit_failures;		/* failures in the current test */
extern const char *unit_skip_reason;	/* set by SKIP: the current test did not run */

void		unit_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

#define CHECK(cond) \
	do { if (!(cond)) unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECKF(cond, ...) \
	do { if (!(cond)) unit_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(cond) \
	do { if (!(cond)) { unit_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define SKIP(why) \
	do { unit_skip_reason = (why); return; } while (0)
#define REQUIREF(cond, ...) \
	do { if (!(cond)) { unit_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)

/* Path of a generated test model ("tiny-relu", ...), or NULL if not available. */
const char *unit_model_dir(const char *name);
/* Path under the shared folder, or NULL if PTUNE_SHARED is unset. */
const char *unit_shared_path(const char *rel);
/* A fresh temporary directory for this test (removed at exit). */
const char *unit_temp_dir(void);

#endif
