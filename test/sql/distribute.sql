-- Distributing a trained task to other servers: ptune.export_task() and
-- ptune.import_task() (README, "Scaling out").  A round trip classifies
-- identically; who may export and import what; a damaged or crafted export
-- is an ERROR with an SQLSTATE, whatever field is wrong; a task trained on
-- another model is refused at import (and at classify: mismatch.sql).
\set VERBOSITY default
SET client_min_messages = warning;

-- The export starts with its magic and format version, and imports as a new
-- task that gives the same labels as the original on every row.
SELECT substring(ptune.export_task('toy') FROM 1 FOR 9) AS header;
SELECT task, version, source_version, members, labels
FROM ptune.import_task(ptune.export_task('toy'), 'toy_copy');
SELECT count(*) AS rows, count(*) FILTER (WHERE ptune.classify('toy', text) = ptune.classify('toy_copy', text)) AS same_label
FROM toy;
SELECT owner = current_user::regrole AS importer_owns, active_version FROM ptune.tasks WHERE task = 'toy_copy';
SELECT metrics->'imported'->>'task' AS from_task, (metrics->'imported'->>'version')::int > 0 AS has_version,
       created_by = current_user::regrole AS created_by_importer,
       p.prompt = (SELECT prompt FROM ptune.prompts WHERE task = 'toy' AND is_active) AS same_bytes
FROM ptune.prompts p WHERE task = 'toy_copy';
-- importing again makes a new version; an ensemble keeps its members
SELECT task, version FROM ptune.import_task(ptune.export_task('toy'), 'toy_copy');
SELECT task FROM ptune.train_prompt('dist_ensemble', 'toy', 'text', 'label', prompt_length => 2, epochs => 0,
                                    max_steps => 1, max_input_tokens => 8, ensemble_size => 2);
SELECT members FROM ptune.import_task(ptune.export_task('dist_ensemble'), 'dist_ensemble_copy');
SELECT count(*) AS same_prompts FROM ptune.prompts a JOIN ptune.prompts b USING (member, prompt)
WHERE a.task = 'dist_ensemble' AND b.task = 'dist_ensemble_copy';
-- a prompt larger than a memory chunk (100 rows x 64 x 4 bytes) and a toasted row
SELECT task FROM ptune.train_prompt('dist_large', 'toy', 'text', 'label', prompt_length => 100, epochs => 0,
                                    max_steps => 1, max_input_tokens => 8);
SELECT length(ptune.export_task('dist_large')) > 25600 AS large_export;
SELECT members FROM ptune.import_task(ptune.export_task('dist_large'), 'dist_large_copy');
SELECT count(*) FILTER (WHERE ptune.classify('dist_large', text) = ptune.classify('dist_large_copy', text)) AS same_label
FROM toy;
SELECT ptune.drop_task('dist_large'), ptune.drop_task('dist_large_copy');
-- the name it was exported under, by default; a given version
SELECT task, version FROM ptune.import_task(ptune.export_task('toy_copy', 1));
SELECT ptune.drop_task('toy_copy'), ptune.drop_task('dist_ensemble_copy');
SELECT task, version FROM ptune.import_task(ptune.export_task('toy', 1), 'toy_copy');
SELECT ptune.drop_task('toy_copy');

-- errors of export
SELECT ptune.export_task(NULL);
SELECT ptune.export_task('no_such_task');
SELECT ptune.export_task('toy', 999);
BEGIN;
SELECT ptune.deactivate('dist_ensemble');
SELECT ptune.export_task('dist_ensemble');
ROLLBACK;

-- Privileges: alice owns a task, bob tries every way around the rules.
CREATE ROLE dist_alice;
CREATE ROLE dist_bob;
CREATE TABLE dist_data AS SELECT * FROM toy;
GRANT SELECT ON dist_data TO PUBLIC;
SET ROLE dist_alice;
SELECT task FROM ptune.train_prompt('dist_alice_task', 'dist_data', 'text', 'label', prompt_length => 2,
                                    epochs => 0, max_steps => 1, max_input_tokens => 8);
RESET ROLE;
CREATE TABLE alice_export AS SELECT ptune.export_task('dist_alice_task') AS data;
GRANT SELECT ON alice_export TO PUBLIC;
SET ROLE dist_bob;
-- with SELECT on ptune.prompts (PUBLIC's by default) bob may see, so export, alice's task
SELECT length(ptune.export_task('dist_alice_task')) > 0 AS bob_exports;
-- but not import into it: it is alice's
SELECT * FROM ptune.import_task((SELECT data FROM alice_export));
SELECT * FROM ptune.import_task((SELECT data FROM alice_export), 'dist_alice_task');
-- nor into the superuser's task
SELECT * FROM ptune.import_task((SELECT data FROM alice_export), 'toy');
-- under a new name, the copy is bob's
SELECT task, version FROM ptune.import_task((SELECT data FROM alice_export), 'dist_bob_task');
SELECT task, owner FROM ptune.tasks WHERE task LIKE 'dist\_%' ORDER BY task;
-- and its version was created by bob (not by the tables' owner the rows are written as)
SELECT DISTINCT created_by FROM ptune.prompts WHERE task = 'dist_bob_task';
-- nobody writes the rows directly
INSERT INTO ptune.prompts SELECT * FROM ptune.prompts WHERE task = 'dist_bob_task';
-- a read-only transaction imports nothing
BEGIN READ ONLY;
SELECT * FROM ptune.import_task((SELECT data FROM alice_export), 'dist_bob_task2');
ROLLBACK;
RESET ROLE;
-- alice may import into her own task: a new version
SET ROLE dist_alice;
SELECT task, version FROM ptune.import_task((SELECT data FROM alice_export));
RESET ROLE;
-- without SELECT on ptune.prompts, bob may export only his own tasks
REVOKE SELECT ON ptune.prompts FROM PUBLIC;
SET ROLE dist_bob;
SELECT ptune.export_task('dist_alice_task');
SELECT length(ptune.export_task('dist_bob_task')) > 0 AS bob_exports_his_own;
-- and a name taken by a task he may not see is refused without naming its owner
SELECT * FROM ptune.import_task((SELECT data FROM alice_export), 'dist_alice_task');
RESET ROLE;
GRANT SELECT ON ptune.prompts TO PUBLIC;

-- Damaged exports.  An export is rebuilt here field by field (the format of
-- src/pg/distribute.c) with a correct checksum, so that each wrong field
-- meets its own check, not the checksum's.
CREATE FUNCTION crc32(b bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE c bigint := 4294967295;
BEGIN
    FOR i IN 0 .. length(b) - 1 LOOP
        c := c # get_byte(b, i);
        FOR k IN 1 .. 8 LOOP
            IF c & 1 = 1 THEN c := (c >> 1) # 3988292384; ELSE c := c >> 1; END IF;
        END LOOP;
    END LOOP;
    RETURN c # 4294967295;
END $$;
CREATE FUNCTION le32(v bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea, 0, (v & 255)::int), 1, ((v >> 8) & 255)::int),
                    2, ((v >> 16) & 255)::int), 3, ((v >> 24) & 255)::int) $$;
CREATE FUNCTION str(s bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ SELECT le32(length(s)) || s $$;
CREATE FUNCTION seal(body bytea, format int DEFAULT 1) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT x || le32(crc32(x))
    FROM (SELECT 'PTUNETSK'::bytea || set_byte('\x000000'::bytea || '\x00'::bytea, 0, format)
                 || le32(16 + length(body) + 4) || body AS x) h $$;
-- the toy task's body; each argument replaces one field
CREATE FUNCTION body(name bytea DEFAULT 'crafted', n_labels bigint DEFAULT 2, label2 bytea DEFAULT 'this',
                     hyper bytea DEFAULT '{}', n_members bigint DEFAULT 1, prompt bytea DEFAULT NULL,
                     prompt_size bigint DEFAULT NULL, tail bytea DEFAULT '') RETURNS bytea
LANGUAGE sql AS $$
    SELECT str(name) || le32(1) || str('tiny-gated') || substring(p.prompt FROM 33 FOR 16)
           || le32(p.prompt_length) || le32(p.d_model) || le32(n_labels) || str('that') || str(label2)
           || str(hyper) || str('{}') || str('dist_alice') || str('2026-01-01') || le32(n_members)
           || le32(coalesce(prompt_size, length(coalesce(body.prompt, p.prompt))))
           || coalesce(body.prompt, p.prompt) || tail
    FROM ptune.prompts p WHERE p.task = 'toy' AND p.is_active $$;
-- each case shows its SQLSTATE and message
CREATE FUNCTION try_import(data bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ptune.import_task(data);
    RETURN 'imported';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT labels FROM ptune.prompts WHERE task = 'toy' AND is_active;
-- the rebuilt export is valid: it imports
SELECT task, members FROM ptune.import_task(seal(body()));
SELECT ptune.drop_task('crafted');
SELECT try_import(seal(body()));
SELECT ptune.drop_task('crafted');
-- not an export at all, cut short, grown, one bit flipped, a later format
SELECT try_import(NULL);
SELECT try_import('');
SELECT try_import('PTPROMPT and more bytes than a header');
SELECT try_import(substring(seal(body()) FROM 1 FOR 100));
SELECT try_import(seal(body()) || '\x00'::bytea);
SELECT try_import(set_byte(seal(body()), 40, get_byte(seal(body()), 40) # 1));
SELECT try_import(seal(body(), 2));
-- every size: the task name, labels, members, a prompt's size, bytes after the last prompt
SELECT try_import(seal(body(name => '')));
SELECT try_import(seal(body(name => convert_to(repeat('x', 201), 'UTF8'))));
SELECT try_import(seal(le32(4294967295)));
-- (0 labels is a generation task: the label strings that follow are then read as later fields)
SELECT try_import(seal(body(n_labels => 0)));
SELECT try_import(seal(body(n_labels => 4294967295)));
SELECT try_import(seal(body(n_labels => 3)));
SELECT try_import(seal(body(n_members => 0)));
SELECT try_import(seal(body(n_members => 2)));
SELECT try_import(seal(body(n_members => 100000)));
SELECT try_import(seal(body(prompt_size => 4294967295)));
SELECT try_import(seal(body(prompt_size => 10)));
SELECT try_import(seal(body(tail => '\x00')));
-- text that is not UTF-8; labels other than the prompt's; JSON that is not
SELECT try_import(seal(body(label2 => '\xff')));
SELECT try_import(seal(body(label2 => 'thus')));
SELECT try_import(seal(body(label2 => 'that')));
SELECT try_import(seal(body(hyper => '{"a":')));
SELECT try_import(seal(body(hyper => '{"scoring": "vote"}')));
-- a prompt whose own checksum fails, or that is no prompt
SELECT try_import(seal(body(prompt => (SELECT set_byte(prompt, 200, get_byte(prompt, 200) # 1)
                                                     FROM ptune.prompts WHERE task = 'toy' AND is_active))));
SELECT try_import(seal(body(prompt => '\x0102030405')));
-- a prompt whose first value is a NaN, under a correct checksum
SELECT try_import(seal(body(prompt => (SELECT q || le32(crc32(q))
    FROM (SELECT overlay(substring(prompt FROM 1 FOR length(prompt) - 4) PLACING '\x0000c07f'::bytea
                         FROM length(prompt) - 3 - prompt_length * d_model * 4 FOR 4) AS q
          FROM ptune.prompts WHERE task = 'toy' AND is_active) nan))));
-- a prompt whose max input tokens (bytes 28 to 31) is 0, under a correct checksum
SELECT try_import(seal(body(prompt => (SELECT q || le32(crc32(q))
    FROM (SELECT overlay(substring(prompt FROM 1 FOR length(prompt) - 4) PLACING le32(0) FROM 29 FOR 4) AS q
          FROM ptune.prompts WHERE task = 'toy' AND is_active) zero))));
-- a one-label task, its prompt rebuilt with one label and a correct checksum:
-- every check of the export holds, but no worker could classify with it
SELECT try_import(seal(str('crafted') || le32(1) || str('tiny-gated') || substring(p FROM 33 FOR 16)
                       || le32(prompt_length) || le32(d_model) || le32(1) || str('that') || str('{}') || str('{}')
                       || str('dist_alice') || str('2026-01-01') || le32(1) || str(q || le32(crc32(q)))))
FROM (SELECT prompt AS p, prompt_length, d_model,
             substring(prompt FROM 1 FOR 12) || le32(length(prompt) - 8) || substring(prompt FROM 17 FOR 32)
             || le32(1) || substring(prompt FROM 53 FOR 4) || str('that')
             || substring(prompt FROM 73 FOR length(prompt) - 76) AS q
      FROM ptune.prompts WHERE task = 'toy' AND is_active) one_label;
SELECT count(*) AS nothing_left_behind FROM ptune.tasks WHERE task = 'crafted';

-- A task of another model (a prompt trained on tiny-relu, written directly
-- by a superuser as replication would) exports, and every import refuses it.
\getenv builddir PG_ABS_BUILDDIR
\set relu_prompt :builddir '/relu_prompt.bin'
INSERT INTO ptune.task_owners (task, owner) VALUES ('relu_task', current_user::text::regrole);
INSERT INTO ptune.prompts (task, version, is_active, model_name, model_fingerprint, prompt_length, d_model, labels, prompt)
SELECT 'relu_task', 1, true, 'tiny-relu', 'other', 3, 64, '{that,this}', pg_read_binary_file(:'relu_prompt');
DO $$
BEGIN
    PERFORM ptune.import_task(ptune.export_task('relu_task'), 'relu_copy');
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'SQLSTATE %: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9a-f]{32}', '<fingerprint>', 'g');
END
$$;
SELECT count(*) AS not_imported FROM ptune.tasks WHERE task = 'relu_copy';
SELECT ptune.drop_task('relu_task');

SELECT ptune.drop_task('dist_alice_task'), ptune.drop_task('dist_bob_task'), ptune.drop_task('dist_ensemble');
DROP TABLE dist_data, alice_export;
DROP ROLE dist_alice, dist_bob;
DROP FUNCTION try_import, body, seal, str, le32, crc32;
