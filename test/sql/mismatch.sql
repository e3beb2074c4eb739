-- A prompt trained on another model is refused with a clear error.
\getenv builddir PG_ABS_BUILDDIR
\set relu_prompt :builddir '/relu_prompt.bin'
-- (a superuser may write the tables directly: register the task, then its prompt)
INSERT INTO ptune.task_owners (task, owner) VALUES ('foreign', current_user::text::regrole);
INSERT INTO ptune.prompts (task, version, is_active, model_name, model_fingerprint, prompt_length, d_model, labels, prompt)
SELECT 'foreign', 1, true, 'tiny-relu', 'other', 3, 64, '{that,this}', pg_read_binary_file(:'relu_prompt');
-- the message names both fingerprints; they depend on the generated files, so mask them
DO $$
BEGIN
    PERFORM ptune.classify('foreign', 'a dog');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'SQLSTATE %: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9a-f]{32}', '<fingerprint>', 'g');
END
$$;
SELECT ptune.drop_task('foreign');
