-- Who may train, see, classify with, change and drop which task (README,
-- "Security model").  Roles: two task owners (alice, bob), a classify-only
-- role (carol), a role with nothing (nobody), and the superuser running this.
CREATE ROLE ptune_alice LOGIN;
CREATE ROLE ptune_bob LOGIN;
CREATE ROLE ptune_carol LOGIN;
CREATE ROLE ptune_nobody LOGIN;
CREATE TABLE alice_data AS SELECT * FROM toy;
ALTER TABLE alice_data OWNER TO ptune_alice;
CREATE TABLE bob_data AS SELECT * FROM toy;
ALTER TABLE bob_data OWNER TO ptune_bob;
CREATE TABLE shared_data AS SELECT * FROM toy;
GRANT SELECT ON shared_data TO PUBLIC;
CREATE TABLE empty_data (text text, label text);
GRANT SELECT ON empty_data TO PUBLIC;
-- a short training: what matters here is who may do it
CREATE FUNCTION train(task text, rel regclass) RETURNS TABLE (task text, version integer)
LANGUAGE sql AS $$
    SELECT t.task, t.version FROM ptune.train_prompt(train.task, rel, 'text', 'label',
        prompt_length => 2, epochs => 0, max_steps => 1, max_input_tokens => 8) t
$$;
SET client_min_messages = warning;   -- training NOTICEs carry timings

-- training reads the table with the caller's privileges
SET ROLE ptune_bob;
SELECT * FROM train('bob_task', 'alice_data');
-- and the held-out table too
SELECT task FROM ptune.train_prompt('bob_task', 'bob_data', 'text', 'label', epochs => 0, max_steps => 1,
                                    test_relation => 'alice_data');
RESET ROLE;

SET ROLE ptune_alice;
SELECT * FROM train('alice_task', 'alice_data');
SELECT task, owner FROM ptune.tasks WHERE task = 'alice_task';
RESET ROLE;
SET ROLE ptune_bob;
SELECT * FROM train('bob_task', 'shared_data');
SELECT * FROM train('bob_task', 'shared_data');
RESET ROLE;

-- by default every role sees and classifies with every task ...
SET ROLE ptune_bob;
SELECT task, owner, active_version, versions FROM ptune.tasks WHERE task LIKE '%\_task' ORDER BY task;
SELECT count(*) > 0 AS sees_the_superusers_tasks FROM ptune.tasks WHERE owner::text NOT LIKE 'ptune\_%';
SELECT ptune.classify('alice_task', 'a dog') IN ('this', 'that') AS bob_classifies;
-- ... but only the owner (or a superuser) retrains, activates, drops or gives a task away;
-- ownership is checked before any row is read: empty_data would be an error of its own
SELECT * FROM train('alice_task', 'empty_data');
SELECT ptune.activate('alice_task', 1);
SELECT ptune.deactivate('alice_task');
SELECT ptune.drop_task('alice_task');
SELECT ptune.reassign_task('alice_task', 'ptune_bob');

-- Takeover by UPDATE: moving one's rows into another's task
UPDATE ptune.prompts SET task = 'alice_task', member = member + 1, is_active = true WHERE task = 'bob_task';
UPDATE ptune.prompts SET is_active = false WHERE task = 'alice_task';
DELETE FROM ptune.prompts WHERE task = 'alice_task';
INSERT INTO ptune.prompts (task, version, member, model_name, model_fingerprint, prompt_length, d_model, labels, prompt)
    SELECT 'alice_task', 9, 0, model_name, model_fingerprint, prompt_length, d_model, labels, prompt
    FROM ptune.prompts WHERE task = 'bob_task' LIMIT 1;
UPDATE ptune.task_owners SET owner = 'ptune_bob' WHERE task = 'alice_task';
INSERT INTO ptune.task_owners VALUES ('new_task', 'ptune_alice');
SELECT * FROM ptune.task_owners;
RESET ROLE;
SELECT task, version, member, is_active, created_by FROM ptune.prompts
WHERE task IN ('alice_task', 'bob_task') ORDER BY task, version, member;

-- the model path is for superusers only
SET ROLE ptune_bob;
ALTER SYSTEM SET ptune.model_path = '/tmp';
RESET ROLE;

-- Errors come before training: a read-only transaction (empty_data would fail later)
SET ROLE ptune_alice;
BEGIN READ ONLY;
SELECT * FROM train('alice_task', 'empty_data');
ROLLBACK;
BEGIN READ ONLY;
SELECT ptune.activate('alice_task', 1);
ROLLBACK;
BEGIN READ ONLY;
SELECT ptune.drop_task('alice_task');
ROLLBACK;
RESET ROLE;

-- A superuser retraining a role's task keeps its owner; the owner still manages it
SELECT * FROM train('alice_task', 'toy');
SELECT task, owner, active_version, versions FROM ptune.tasks WHERE task = 'alice_task';
SELECT version, created_by FROM ptune.versions WHERE task = 'alice_task' ORDER BY version;
SET ROLE ptune_alice;
SELECT ptune.activate('alice_task', 1);
SELECT ptune.activate('alice_task', 2);
SELECT * FROM train('alice_task', 'alice_data');
SELECT version, is_active FROM ptune.versions WHERE task = 'alice_task' ORDER BY version;
RESET ROLE;

-- Search paths of the caller never reach ptune's own queries
CREATE SCHEMA hijack;
GRANT USAGE ON SCHEMA hijack TO PUBLIC;
CREATE FUNCTION hijack.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'hijacked by %', current_user;
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR hijack.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hijack.texteq);
SET ROLE ptune_alice;
SET search_path = hijack, pg_catalog, public;
SELECT ptune.activate('alice_task', 3);
SELECT length(ptune.classify('alice_task', 'a dog')) = 4 AS classified;
RESET search_path;
RESET ROLE;
DROP SCHEMA hijack CASCADE;

-- Owners are role OIDs: a rename keeps the tasks
CREATE ROLE ptune_dave LOGIN;
SET ROLE ptune_dave;
SELECT * FROM train('dave_task', 'shared_data');
RESET ROLE;
ALTER ROLE ptune_dave RENAME TO ptune_david;
SELECT task, owner FROM ptune.tasks WHERE task = 'dave_task';
SET ROLE ptune_david;
SELECT * FROM train('dave_task', 'shared_data');
SELECT ptune.activate('dave_task', 1);
RESET ROLE;

-- DROP ROLE is refused while the role owns tasks here; REASSIGN OWNED and
-- DROP OWNED carry tasks along like other objects
DROP ROLE ptune_david;
CREATE ROLE ptune_erin LOGIN;
REASSIGN OWNED BY ptune_david TO ptune_erin;
SELECT task, owner FROM ptune.tasks WHERE task = 'dave_task';
DROP OWNED BY ptune_erin;
SELECT count(*) AS dave_task_rows FROM ptune.prompts WHERE task = 'dave_task';
DROP ROLE ptune_david;

-- Group ownership: members of the owning role manage its tasks
CREATE ROLE ptune_team;
GRANT ptune_team TO ptune_bob;
SET ROLE ptune_bob;
SET ROLE ptune_team;
SELECT * FROM train('team_task', 'shared_data');
RESET ROLE;
SET ROLE ptune_bob;
SELECT ptune.activate('team_task', 1);
SELECT owner FROM ptune.tasks WHERE task = 'team_task';
-- giving a task away needs membership in the new owner, as ALTER ... OWNER does
SELECT ptune.reassign_task('bob_task', 'ptune_alice');
SELECT ptune.reassign_task('team_task', 'ptune_bob');
SELECT owner FROM ptune.tasks WHERE task = 'team_task';
RESET ROLE;
SET ROLE ptune_alice;
SELECT ptune.drop_task('team_task');
RESET ROLE;

-- REVOKE / GRANT: an administrator keeps roles to their own tasks and makes
-- training a granted right
REVOKE SELECT ON ptune.prompts FROM PUBLIC;
GRANT SELECT ON ptune.prompts TO ptune_carol;
REVOKE EXECUTE ON FUNCTION ptune.train_prompt FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ptune.train_prompt TO ptune_alice, ptune_bob;

-- bob keeps his own tasks: sees, trains, classifies, activates, drops them
SET ROLE ptune_bob;
SELECT task, owner, active_version, versions FROM ptune.tasks ORDER BY task;
SELECT task, version, is_active, created_by FROM ptune.versions ORDER BY task, version;
SELECT count(*) FROM ptune.prompts;
SELECT ptune.classify('bob_task', 'a dog') IN ('this', 'that') AS own_task_classifies;
SELECT ptune.classify('alice_task', 'a dog');
SELECT * FROM ptune.evaluate('alice_task', 'shared_data', 'text', 'label');
SELECT count(*) FROM ptune.explain_prompt('alice_task', 1);
SELECT ptune.task_visible('ptune_alice') AS sees_alice, ptune.task_visible('ptune_bob') AS sees_self;
SELECT * FROM train('bob_task', 'shared_data');
SELECT ptune.activate('bob_task', 1);
-- a hidden task is still taken: its name is refused, directly or not
SELECT * FROM train('alice_task', 'shared_data');
INSERT INTO ptune.prompts (task, version, model_name, model_fingerprint, prompt_length, d_model, labels, prompt)
    VALUES ('alice_task', 9, 'm', 'f', 1, 1, '{a,b}', '\x00');
-- a condition of the caller's cannot peek at hidden rows (security_barrier views)
CREATE FUNCTION pg_temp.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
    RAISE WARNING 'peeked at %', $1;
    RETURN true;
END $$;
SELECT task FROM ptune.tasks WHERE pg_temp.peek(task);
RESET ROLE;

-- carol classifies with every task but trains nothing and changes nothing
SET ROLE ptune_carol;
SELECT string_agg(task, ', ' ORDER BY task) AS tasks_carol_sees FROM ptune.tasks WHERE task LIKE '%\_task';
SELECT ptune.classify('alice_task', 'a dog') IN ('this', 'that') AS carol_classifies;
SELECT ptune.classify('bob_task', 'a cat') IN ('this', 'that') AS carol_classifies;
SELECT * FROM train('carol_task', 'shared_data');
SELECT ptune.activate('alice_task', 1);
SELECT ptune.drop_task('bob_task');
UPDATE ptune.prompts SET is_active = false;
RESET ROLE;

-- nobody sees nothing and may do nothing
SET ROLE ptune_nobody;
SELECT count(*) AS tasks_nobody_sees FROM ptune.tasks;
SELECT count(*) AS versions_nobody_sees FROM ptune.versions;
SELECT ptune.classify('alice_task', 'a dog');
SELECT * FROM train('nobody_task', 'shared_data');
SELECT ptune.drop_task('alice_task');
SELECT * FROM ptune.task_owners;
RESET ROLE;
GRANT SELECT ON ptune.prompts TO PUBLIC;
GRANT EXECUTE ON FUNCTION ptune.train_prompt TO PUBLIC;

-- names are quoted, never pasted into SQL: a column name is just a name
SELECT * FROM ptune.train_prompt('t', 'toy', 'text"); DROP TABLE toy; --', 'label');
SELECT * FROM ptune.evaluate('toy', 'toy', 'label'' OR 1=1 --', 'label');
SELECT count(*) AS toy_rows FROM toy;
-- a task name is data
SELECT * FROM train('it''s "quoted"; DROP TABLE toy', 'toy');
SELECT ptune.classify('it''s "quoted"; DROP TABLE toy', 'a dog') IN ('this', 'that') AS quoted_task_works;
SELECT ptune.drop_task('it''s "quoted"; DROP TABLE toy');

-- A dropped owner's tasks (DROP ROLE only sees the database it runs in):
-- they keep the old OID, so a new role of the same name gets nothing
CREATE ROLE ptune_frank LOGIN;
CREATE DATABASE ptune_regress_other;
\c ptune_regress_other
SET client_min_messages = warning;
CREATE EXTENSION ptune;
CREATE TABLE frank_data AS SELECT * FROM (VALUES ('a dog', 'this'), ('an apple', 'that'), ('a cat', 'this'), ('a lemon', 'that')) v(text, label);
GRANT SELECT ON frank_data TO PUBLIC;
SET ROLE ptune_frank;
SELECT task FROM ptune.train_prompt('frank_task', 'frank_data', 'text', 'label', prompt_length => 2,
    epochs => 0, max_steps => 1, max_input_tokens => 8);
RESET ROLE;
\c ptune_regress
DROP ROLE ptune_frank;
CREATE ROLE ptune_frank LOGIN;
\c ptune_regress_other
SET client_min_messages = warning;
SELECT owner::text ~ '^[0-9]+$' AS owner_is_a_bare_oid FROM ptune.tasks;
SET ROLE ptune_frank;
SELECT count(*) AS new_frank_sees FROM ptune.tasks WHERE owner::text = 'ptune_frank';
DO $$
BEGIN
    PERFORM ptune.drop_task('frank_task');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
RESET ROLE;
SELECT ptune.reassign_task('frank_task', 'ptune_frank');
SELECT owner FROM ptune.tasks;
SET ROLE ptune_frank;
SELECT ptune.drop_task('frank_task');
RESET ROLE;
\c ptune_regress
DROP DATABASE ptune_regress_other;

-- superusers may manage any task; roles without tasks go
SET client_min_messages = warning;
SELECT ptune.drop_task('alice_task');
SELECT ptune.drop_task('bob_task');
DROP ROLE ptune_bob;
SELECT ptune.drop_task('team_task');
REVOKE EXECUTE ON FUNCTION ptune.train_prompt FROM ptune_alice, ptune_bob;
REVOKE SELECT ON ptune.prompts FROM ptune_carol;
DROP TABLE alice_data, bob_data, shared_data, empty_data;
DROP ROLE ptune_bob;
DROP FUNCTION train(text, regclass);
DROP ROLE ptune_alice, ptune_carol, ptune_nobody, ptune_erin, ptune_team, ptune_frank;
SELECT task FROM ptune.tasks WHERE task LIKE '%\_task' ORDER BY task;
