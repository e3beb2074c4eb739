-- ptune 0.1.0: prompt tuning of frozen T5 models.
-- The model lives in a background worker (shared_preload_libraries = 'ptune',
-- ptune.model_path); these functions talk to it.

\echo Use "CREATE EXTENSION ptune" to load this file. \quit

-- Refuse a schema "ptune" made beforehand: objects planted there could be
-- picked up by this script or by ptune's own queries (with a trusted
-- extension a database owner runs CREATE EXTENSION).  An empty one is taken
-- only from the installing role or a superuser: its owner could otherwise
-- add functions or swap tables in it later.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                   JOIN pg_catalog.pg_extension e ON e.extname = 'ptune'
                   JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                   WHERE n.nspname = 'ptune' AND (n.nspowner = e.extowner OR r.rolsuper)) THEN
        RAISE EXCEPTION 'schema "ptune" belongs to role "%"',
            (SELECT nspowner::regrole FROM pg_catalog.pg_namespace WHERE nspname = 'ptune')
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Its owner could add or replace objects in ptune''s schema.',
                  HINT = 'Drop the schema "ptune", or give it to the role installing ptune, first.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator WHERE oprnamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE collnamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_conversion WHERE connamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_opclass WHERE opcnamespace = 'ptune'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_opfamily WHERE opfnamespace = 'ptune'::regnamespace) THEN
        RAISE EXCEPTION 'schema "ptune" already holds objects'
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'CREATE EXTENSION ptune makes its own schema: drop or rename the existing one first.';
    END IF;
END
$$;

-- The library must have been preloaded (shared memory, the worker); without
-- it, this is a clear error instead of functions that cannot work.
CREATE FUNCTION ptune.require_preloaded() RETURNS void
AS 'MODULE_PATHNAME', 'ptune_require_preloaded'
LANGUAGE C;
SELECT ptune.require_preloaded();
DROP FUNCTION ptune.require_preloaded();

-- The task registry: who owns each task.  The owner is a role OID (regrole,
-- shown by name): renaming the role keeps its tasks; DROP ROLE is refused
-- while the role owns tasks in the database where it runs, but a role dropped
-- from another database leaves its tasks there under its bare OID (which a
-- new role may get once OIDs wrap around) until a superuser reassigns them
-- (ptune.reassign_task).  The first training of a task
-- inserts its row before training starts, so a second role training the same
-- new task waits for it and then gets the ownership error.
CREATE TABLE ptune.task_owners (
    task       text        PRIMARY KEY CHECK (task <> '' AND length(task) <= 200),
    owner      regrole     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_owners_owner ON ptune.task_owners (owner);
COMMENT ON TABLE ptune.task_owners IS 'Owner of each ptune task; changed only by ptune''s functions';

-- Soft prompts, one row per prompt: a task has versions, a version has one
-- prompt or several (an ensemble: members 0..K-1).  Classification uses the
-- active version.  The prompt is the engine's binary format (see README).
CREATE TABLE ptune.prompts (
    task              text        NOT NULL REFERENCES ptune.task_owners ON DELETE CASCADE,
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
    -- the role that trained this version (a superuser retraining a task
    -- leaves its owner as it was)
    created_by        regrole     NOT NULL DEFAULT pg_catalog.quote_ident(current_user)::regrole,
    PRIMARY KEY (task, version, member),
    -- the version's default scoring (README, "Scoring"); absent: label_tokens
    CONSTRAINT prompts_scoring_check
        CHECK (coalesce(hyperparameters->>'scoring', 'label_tokens') IN ('label_tokens', 'rank'))
);
COMMENT ON TABLE ptune.prompts IS 'Soft prompts trained by ptune.train_prompt(), versioned per task';

-- at most one active version per task
CREATE UNIQUE INDEX prompts_one_active ON ptune.prompts (task, member) WHERE is_active;

-- pg_dump dumps the rows, so tasks and prompts survive dump and restore
SELECT pg_catalog.pg_extension_config_dump('ptune.task_owners', '');
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
    scoring             text    DEFAULT 'label_tokens',
    weight_decay        float8  DEFAULT NULL,   -- NULL: the optimizer's (adafactor 1e-5, adam 0)
    max_grad_norm       float8  DEFAULT NULL,   -- NULL: the optimizer's (adafactor none, adam 1)
    min_dim_size_to_factor integer DEFAULT 128, -- adafactor: factor when min(P, d_model) >= this
    adafactor_start_step integer DEFAULT 0,     -- adafactor: T5X's step count at the start
    -- 'classification': label_column holds class labels; 'generation':
    -- label_column holds each row's target text (README, "Generation")
    objective           text    DEFAULT 'classification')
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

-- Generation -------------------------------------------------------------------
-- Decodes text: with the task's prompt (a generation task, or a classification
-- task decoding freely), or with the frozen model alone when task is NULL.
-- max_new_tokens counts EOS; num_beams 1 is greedy, more is beam search
-- (README, "Generation").  Who may classify with a task may generate with it.

CREATE FUNCTION ptune.generate(task text, input text, max_new_tokens integer DEFAULT 32,
                               num_beams integer DEFAULT 1) RETURNS text
AS 'MODULE_PATHNAME', 'ptune_generate'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION ptune.generate(task text, inputs text[], max_new_tokens integer DEFAULT 32,
                               num_beams integer DEFAULT 1) RETURNS text[]
AS 'MODULE_PATHNAME', 'ptune_generate_array'
LANGUAGE C STABLE PARALLEL SAFE;

-- Decodes each row's text and compares it with its target: exact match, SQuAD's
-- token F1, and for a classification task (the paper's evaluation by free
-- decoding) how many outputs were none of its labels (they count as wrong).
CREATE FUNCTION ptune.evaluate_generation(task text, relation regclass, text_column name,
                                          target_column name, max_new_tokens integer DEFAULT 32,
                                          num_beams integer DEFAULT 1)
RETURNS TABLE (rows bigint, exact_match float8, f1 float8, invalid_outputs bigint)
AS 'MODULE_PATHNAME', 'ptune_evaluate_generation'
LANGUAGE C STABLE PARALLEL UNSAFE;

CREATE FUNCTION ptune.explain_prompt(task text, k integer DEFAULT 5)
RETURNS TABLE (member integer, prompt_row integer, rank integer, piece text, similarity float8)
AS 'MODULE_PATHNAME', 'ptune_explain_prompt'
LANGUAGE C STABLE;

-- Managing tasks --------------------------------------------------------------
-- These functions check the caller's rights themselves, then write the rows
-- as the owner of the tables (see "Security model" in README): nobody else
-- may write ptune.prompts or ptune.task_owners directly.

-- Makes a version the active one.
CREATE FUNCTION ptune.activate(task text, version integer) RETURNS void
AS 'MODULE_PATHNAME', 'ptune_activate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Leaves the task without an active version (classification refuses it).
CREATE FUNCTION ptune.deactivate(task text) RETURNS void
AS 'MODULE_PATHNAME', 'ptune_deactivate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Deletes every version of the task; returns how many prompt rows went.
CREATE FUNCTION ptune.drop_task(task text) RETURNS integer
AS 'MODULE_PATHNAME', 'ptune_drop_task'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Gives the task to another role: a superuser, or (like ALTER ... OWNER) a
-- role with the owner's privileges that may also SET ROLE to the new owner.
CREATE FUNCTION ptune.reassign_task(task text, new_owner regrole) RETURNS void
AS 'MODULE_PATHNAME', 'ptune_reassign_task'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- May the current role see (and classify with) a task of this owner?  Its
-- own tasks and those of roles whose privileges it has, always; every task
-- with SELECT on ptune.prompts.  The one definition of visibility: the views
-- below and the C functions use it.
CREATE FUNCTION ptune.task_visible(owner regrole) RETURNS boolean
AS 'MODULE_PATHNAME', 'ptune_task_visible'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- One row per task the caller may see: active version, versions, owner, labels.
-- The view reads the tables as its owner, so its WHERE clause applies the
-- caller's visibility (security_barrier keeps the caller's own conditions
-- from seeing other rows first).
CREATE VIEW ptune.tasks WITH (security_barrier) AS
    SELECT o.task, v.active_version, v.versions, o.owner,
           (SELECT p.labels FROM ptune.prompts p WHERE p.task = o.task
            ORDER BY p.is_active DESC, p.version DESC LIMIT 1) AS labels,
           v.last_trained
    FROM ptune.task_owners o
    LEFT JOIN LATERAL (
        SELECT max(p.version) FILTER (WHERE p.is_active) AS active_version,
               count(DISTINCT p.version) AS versions, max(p.created_at) AS last_trained
        FROM ptune.prompts p WHERE p.task = o.task) v ON true
    WHERE ptune.task_visible(o.owner);

-- One row per version of the tasks the caller may see, without the prompt
-- bytes: what a role without SELECT on ptune.prompts reads about its tasks.
CREATE VIEW ptune.versions WITH (security_barrier) AS
    SELECT p.task, p.version, bool_or(p.is_active) AS is_active, count(*)::integer AS members,
           min(p.created_by::oid)::regrole AS created_by, min(p.created_at) AS created_at,
           min(p.model_name) AS model_name, min(p.prompt_length) AS prompt_length,
           min(p.labels) AS labels,
           (array_agg(p.hyperparameters ORDER BY p.member))[1] AS hyperparameters,
           (array_agg(p.metrics ORDER BY p.member))[1] AS metrics
    FROM ptune.prompts p JOIN ptune.task_owners o ON o.task = p.task
    WHERE ptune.task_visible(o.owner)
    GROUP BY p.task, p.version;

-- ==== Distribution: tasks to other servers (README, "Scaling out") =========
-- A task version as one self-checking bytea (format in src/pg/distribute.c):
-- export where it was trained, import on every server that classifies with
-- it.  Export: whoever may see the task.  Import: the rules of a training (a
-- new task becomes the caller's; into an existing one only its owner and
-- those with the owner's privileges), and the loaded model must have the
-- fingerprint the task was trained on.

-- The task's active version, or the one named.
CREATE FUNCTION ptune.export_task(task text, version integer DEFAULT NULL) RETURNS bytea
AS 'MODULE_PATHNAME', 'ptune_export_task'
LANGUAGE C STABLE PARALLEL SAFE;

-- Stores the export as a new, active version of `task` (default: the name it
-- was exported under); returns the new version and the exporting server's.
CREATE FUNCTION ptune.import_task(data bytea, task text DEFAULT NULL)
RETURNS TABLE (task text, version integer, source_version bigint, members integer, labels text[])
AS 'MODULE_PATHNAME', 'ptune_import_task'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- ==== end of Distribution ====================================================

-- The worker ------------------------------------------------------------------

CREATE FUNCTION ptune.model_info()
RETURNS TABLE (model_name text, model_path text, fingerprint text, config jsonb, parameters bigint)
AS 'MODULE_PATHNAME', 'ptune_model_info'
LANGUAGE C VOLATILE;

CREATE FUNCTION ptune.status()
RETURNS TABLE (worker_state text, worker_pid integer, generation bigint, started_at timestamptz,
               queued integer, running integer, requests_served bigint, requests_failed bigint,
               forward_passes bigint, rows_classified bigint, last_error text,
               free_slots integer, waiting integer, payload_bytes bigint,
               training_pauses bigint, rows_generated bigint)
AS 'MODULE_PATHNAME', 'ptune_status'
LANGUAGE C VOLATILE;

-- Privileges --------------------------------------------------------------------
-- See "Security model" in README.  In short: functions are executable by
-- PUBLIC (REVOKE EXECUTE ON FUNCTION ptune.train_prompt FROM PUBLIC makes
-- training a granted right); SELECT on ptune.prompts is the right to see and
-- classify with every task (granted to PUBLIC; REVOKE it to keep roles to
-- their own tasks); nobody but the tables' owner writes them directly.
--
-- The tables belong to the extension's owner (@extowner@: the role
-- that ran CREATE EXTENSION), so that role can dump and restore them without
-- row-level security getting in the way, and ptune's functions write as that
-- role, never as a superuser of their own choosing.  The views stay with the
-- superuser that runs this script: a view's owner can replace it, and a
-- superuser querying a view an untrusted role had replaced would run that
-- role's functions.  (Extension members are not dumped, so a restore does
-- not need to own them.)

ALTER TABLE ptune.task_owners OWNER TO @extowner@;
ALTER TABLE ptune.prompts OWNER TO @extowner@;

REVOKE ALL ON ptune.task_owners, ptune.prompts FROM PUBLIC;
GRANT USAGE ON SCHEMA ptune TO PUBLIC;
GRANT SELECT ON ptune.prompts TO PUBLIC;
GRANT SELECT ON ptune.tasks, ptune.versions, ptune.training_progress TO PUBLIC;
