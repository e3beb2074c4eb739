-- Who may train, read, change and classify.
CREATE ROLE ptune_alice LOGIN;
CREATE ROLE ptune_bob LOGIN;
CREATE TABLE alice_data AS SELECT * FROM toy;
ALTER TABLE alice_data OWNER TO ptune_alice;
CREATE TABLE bob_data AS SELECT * FROM toy;
ALTER TABLE bob_data OWNER TO ptune_bob;

-- training reads the table with the caller's privileges
SET ROLE ptune_bob;
SELECT * FROM ptune.train_prompt('bob_task', 'alice_data', 'text', 'label', epochs => 0, max_steps => 1);
-- and the held-out table too
SELECT * FROM ptune.train_prompt('bob_task', 'bob_data', 'text', 'label', epochs => 0, max_steps => 1,
                                 test_relation => 'alice_data');
RESET ROLE;

SET ROLE ptune_alice;
SET client_min_messages = warning;
SELECT task, version FROM ptune.train_prompt('alice_task', 'alice_data', 'text', 'label',
    prompt_length => 2, epochs => 0, max_steps => 2, max_input_tokens => 8);
RESET client_min_messages;
SELECT task, created_by FROM ptune.prompts WHERE task = 'alice_task';
RESET ROLE;

-- another role may classify with it (SELECT on ptune.prompts is granted to PUBLIC) ...
SET ROLE ptune_bob;
SELECT ptune.classify('alice_task', 'a dog') IN ('this', 'that') AS bob_classifies;
-- ... but not retrain, activate, drop or edit it
SELECT * FROM ptune.train_prompt('alice_task', 'toy', 'text', 'label', epochs => 0, max_steps => 1);
SELECT ptune.activate('alice_task', 1);
SELECT ptune.drop_task('alice_task');
UPDATE ptune.prompts SET is_active = false WHERE task = 'alice_task';
DELETE FROM ptune.prompts WHERE task = 'alice_task';
INSERT INTO ptune.prompts (task, version, model_name, model_fingerprint, prompt_length, d_model, labels, prompt, created_by)
    VALUES ('alice_task', 9, 'm', 'f', 1, 1, '{a,b}', '\x00', 'ptune_alice');
SELECT count(*) AS alice_rows_intact FROM ptune.prompts WHERE task = 'alice_task' AND is_active;
-- the model path is for superusers only
ALTER SYSTEM SET ptune.model_path = '/tmp';
RESET ROLE;

-- classification follows ordinary GRANTs: without SELECT on ptune.prompts, no classify
REVOKE SELECT ON ptune.prompts FROM PUBLIC;
SET ROLE ptune_bob;
SELECT ptune.classify('alice_task', 'a dog');
RESET ROLE;
GRANT SELECT ON ptune.prompts TO PUBLIC;

-- names are quoted, never pasted into SQL: a column name is just a name
SELECT * FROM ptune.train_prompt('t', 'toy', 'text"); DROP TABLE toy; --', 'label');
SELECT * FROM ptune.evaluate('toy', 'toy', 'label'' OR 1=1 --', 'label');
SELECT count(*) AS toy_rows FROM toy;
-- a task name is data
SET client_min_messages = warning;
SELECT task FROM ptune.train_prompt('it''s "quoted"; DROP TABLE toy', 'toy', 'text', 'label',
    prompt_length => 2, epochs => 0, max_steps => 1, max_input_tokens => 8);
RESET client_min_messages;
SELECT ptune.classify('it''s "quoted"; DROP TABLE toy', 'a dog') IN ('this', 'that') AS quoted_task_works;
SELECT ptune.drop_task('it''s "quoted"; DROP TABLE toy');

-- superusers may manage any task
SELECT ptune.drop_task('alice_task');
DROP TABLE alice_data;
DROP TABLE bob_data;
DROP ROLE ptune_alice;
DROP ROLE ptune_bob;
