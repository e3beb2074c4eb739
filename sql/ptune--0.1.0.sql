-- ptune 0.1.0: prompt tuning of frozen T5 models.
-- The model lives in a background worker (shared_preload_libraries = 'ptune',
-- ptune.model_path); these functions talk to it.

\echo Use "CREATE EXTENSION ptune" to load this file. \quit

-- Soft prompts, one row per prompt: a task has versions, a version has one
-- prompt or several (an ensemble: members 0..K-1).  Classification uses the
-- active version.  The prompt is the engine's binary format (see README).
CREATE TABLE ptune.prompts (
    task              text        NOT NULL CHECK (task <> '' AND length(task) <= 200),
    version           integer     NOT NULL CHECK (version > 0),
    member            integer     NOT NULL DEFAULT 0 CHECK (member >= 0),
    is_active         boolean     NOT NULL DEFAULT false,
    model_name        text        NOT NULL,
    model_fingerprint text        NOT NULL,
    prompt_length     integer     NOT NULL CHECK (prompt_length > 0),
    d_model           integer     NOT NULL CHECK (d_model > 0),
    labels            text[]      NOT NULL,
    prompt            bytea       NOT NULL,
    hyperparameters   jsonb       NOT NULL DEFAULT '{}',
    metrics           jsonb       NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        name        NOT NULL DEFAULT current_user,
    PRIMARY KEY (task, version, member),
    -- the version's default scoring (README, "Scoring"); absent: label_tokens
    CONSTRAINT prompts_scoring_check
        CHECK (coalesce(hyperparameters->>'scoring', 'label_tokens') IN ('label_tokens', 'rank'))
);
COMMENT ON TABLE ptune.prompts IS 'Soft prompts trained by ptune.train_prompt(), versioned per task';

-- at most one active version per task
CREATE UNIQUE INDEX prompts_one_active ON ptune.prompts (task, member) WHERE is_active;

-- pg_dump dumps the rows, so prompts survive dump and restore
SELECT pg_catalog.pg_extension_config_dump('ptune.prompts', '');

-- Training --------------------------------------------------------------------

CREATE FUNCTION ptune.train_prompt(
    task                text,
    relation            regclass,
    text_column         name,
    label_column        name,
    prompt_length       integer DEFAULT 20,
    init                text    DEFAULT 'class_labels',
    optimizer           text    DEFAULT 'adafactor',
    learning_rate       float8  DEFAULT 0.3,
    batch_size          integer DEFAULT 8,
    epochs              integer DEFAULT 3,
    max_steps           integer DEFAULT NULL,
    validation_fraction float8  DEFAULT 0.1,
    ensemble_size       integer DEFAULT 1,
    max_input_tokens    integer DEFAULT current_setting('ptune.max_input_tokens')::integer,
    seed                integer DEFAULT 42,
    test_relation       regclass DEFAULT NULL,
    scoring             text    DEFAULT 'label_tokens')
RETURNS TABLE (task text, version integer, labels text[], train_rows integer, steps bigint,
               seconds float8, final_loss float8, selection_accuracy float8,
               test_accuracy float8)
AS 'MODULE_PATHNAME', 'ptune_train_prompt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION ptune.training_progress_rows()
RETURNS TABLE (pid integer, database oid, user_id oid, task text, phase text, member integer,
               members integer, step bigint, total_steps bigint, loss float8,
               validation_accuracy float8, rows_per_second float8, started_at timestamptz)
AS 'MODULE_PATHNAME', 'ptune_training_progress'
LANGUAGE C VOLATILE;

CREATE VIEW ptune.training_progress AS
    SELECT p.pid, d.datname AS database, r.rolname AS user_name, p.task, p.phase, p.member,
           p.members, p.step, p.total_steps, p.loss, p.validation_accuracy, p.rows_per_second,
           p.started_at
    FROM ptune.training_progress_rows() p
    LEFT JOIN pg_catalog.pg_database d ON d.oid = p.database
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = p.user_id;

-- Classification --------------------------------------------------------------
-- scoring: 'label_tokens' or 'rank'; NULL takes ptune.scoring, then the mode
-- stored with the task's active version (README, "Scoring").  STABLE: the
-- answer depends on the table and the settings, which parallel workers share.

CREATE FUNCTION ptune.classify(task text, input text, scoring text DEFAULT NULL) RETURNS text
AS 'MODULE_PATHNAME', 'ptune_classify'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION ptune.classify(task text, inputs text[], scoring text DEFAULT NULL) RETURNS text[]
AS 'MODULE_PATHNAME', 'ptune_classify_array'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION ptune.classify_scores(task text, input text, scoring text DEFAULT NULL)
RETURNS TABLE (label text, probability float8)
AS 'MODULE_PATHNAME', 'ptune_classify_scores'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION ptune.evaluate(task text, relation regclass, text_column name, label_column name,
                               scoring text DEFAULT NULL)
RETURNS TABLE (rows bigint, accuracy float8, macro_f1 float8, confusion jsonb)
AS 'MODULE_PATHNAME', 'ptune_evaluate'
LANGUAGE C STABLE PARALLEL UNSAFE;

CREATE FUNCTION ptune.explain_prompt(task text, k integer DEFAULT 5)
RETURNS TABLE (member integer, prompt_row integer, rank integer, piece text, similarity float8)
AS 'MODULE_PATHNAME', 'ptune_explain_prompt'
LANGUAGE C STABLE;

-- Managing tasks --------------------------------------------------------------

-- Only a task's owner (the role that created it) or a superuser may change it.
CREATE FUNCTION ptune.check_task_owner(task text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    owner name;
BEGIN
    SELECT p.created_by INTO owner FROM ptune.prompts p WHERE p.task = check_task_owner.task LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" does not exist', check_task_owner.task
            USING ERRCODE = 'undefined_object',
                  HINT = 'List tasks with SELECT * FROM ptune.tasks.';
    END IF;
    IF owner <> current_user AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'task "%" belongs to role "%"', check_task_owner.task, owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the role that created a task, or a superuser, may change it.';
    END IF;
END
$$;

CREATE FUNCTION ptune.activate(task text, version integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ptune.check_task_owner(activate.task);
    IF NOT EXISTS (SELECT 1 FROM ptune.prompts p
                   WHERE p.task = activate.task AND p.version = activate.version) THEN
        RAISE EXCEPTION 'task "%" has no version %', activate.task, activate.version
            USING ERRCODE = 'undefined_object',
                  HINT = 'List its versions with SELECT DISTINCT version FROM ptune.prompts WHERE task = ...';
    END IF;
    UPDATE ptune.prompts p SET is_active = false
        WHERE p.task = activate.task AND p.is_active AND p.version <> activate.version;
    UPDATE ptune.prompts p SET is_active = true
        WHERE p.task = activate.task AND p.version = activate.version;
END
$$;

CREATE FUNCTION ptune.drop_task(task text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    dropped integer;
BEGIN
    PERFORM ptune.check_task_owner(drop_task.task);
    DELETE FROM ptune.prompts p WHERE p.task = drop_task.task;
    GET DIAGNOSTICS dropped = ROW_COUNT;
    RETURN dropped;
END
$$;

-- One row per task: its active version, how many versions, owner, labels.
CREATE VIEW ptune.tasks AS
    SELECT DISTINCT ON (p.task) p.task, v.active_version, v.versions, p.created_by AS owner,
           p.labels, v.last_trained
    FROM ptune.prompts p
    JOIN (SELECT task, max(version) FILTER (WHERE is_active) AS active_version,
                 count(DISTINCT version) AS versions, max(created_at) AS last_trained
          FROM ptune.prompts GROUP BY task) v USING (task)
    ORDER BY p.task, p.is_active DESC, p.version DESC;

-- The worker ------------------------------------------------------------------

CREATE FUNCTION ptune.model_info()
RETURNS TABLE (model_name text, model_path text, fingerprint text, config jsonb, parameters bigint)
AS 'MODULE_PATHNAME', 'ptune_model_info'
LANGUAGE C VOLATILE;

CREATE FUNCTION ptune.status()
RETURNS TABLE (worker_state text, worker_pid integer, generation bigint, started_at timestamptz,
               queued integer, running integer, requests_served bigint, requests_failed bigint,
               forward_passes bigint, rows_classified bigint, last_error text,
               free_slots integer, waiting integer, payload_bytes bigint)
AS 'MODULE_PATHNAME', 'ptune_status'
LANGUAGE C VOLATILE;

-- Privileges --------------------------------------------------------------------
-- Anyone may train tasks of their own and classify with any task they can
-- read: reading a task's rows is what classification needs, so who may
-- classify follows ordinary GRANTs on ptune.prompts (an administrator may
-- REVOKE SELECT FROM PUBLIC and grant it to chosen roles, or add policies).
-- Row-level security keeps each task's versions in the hands of the role
-- that created it; superusers bypass it.

ALTER TABLE ptune.prompts ENABLE ROW LEVEL SECURITY;
CREATE POLICY prompts_read ON ptune.prompts FOR SELECT USING (true);
CREATE POLICY prompts_insert ON ptune.prompts FOR INSERT
    WITH CHECK (created_by = current_user
                AND NOT EXISTS (SELECT 1 FROM ptune.prompts other
                                WHERE other.task = prompts.task AND other.created_by <> current_user));
CREATE POLICY prompts_update ON ptune.prompts FOR UPDATE
    USING (created_by = current_user) WITH CHECK (created_by = current_user);
CREATE POLICY prompts_delete ON ptune.prompts FOR DELETE USING (created_by = current_user);

GRANT USAGE ON SCHEMA ptune TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ptune.prompts TO PUBLIC;
GRANT SELECT ON ptune.tasks, ptune.training_progress TO PUBLIC;
