-- BLAS, OpenMP and the model stay out of the postmaster and ordinary
-- backends: only the worker process maps them.
SELECT ptune.classify('toy', 'a dog') IN ('this', 'that') AS classified;
SELECT pg_read_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\n', 1) || '/maps') ~ '(openblas|libgomp|sentencepiece|ptune_worker)'
       AS postmaster_has_math;
SELECT pg_read_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\n', 1) || '/status') ~ E'Threads:\\t1\\n' AS postmaster_single_threaded;
SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps') ~ '(openblas|libgomp|sentencepiece|ptune_worker)'
       AS backend_has_math;
SELECT pg_read_file('/proc/' || worker_pid || '/maps') ~ 'openblas' AS worker_has_openblas,
       pg_read_file('/proc/' || worker_pid || '/maps') ~ 'ptune_worker' AS worker_has_engine
FROM ptune.status();
