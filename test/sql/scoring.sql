-- Scoring: label-token softmax or rank classification (T5X), chosen by the
-- call's argument, else ptune.scoring, else the mode stored with the task's
-- active version, else label_tokens.
CREATE FUNCTION pg_temp.error_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN state || ': ' || message || coalesce(' HINT: ' || nullif(hint, ''), '');
END
$$;
-- the probability of 'this' for a fixed text
CREATE FUNCTION pg_temp.p_this(task text, scoring text DEFAULT NULL) RETURNS float8 LANGUAGE sql AS $$
    SELECT probability FROM ptune.classify_scores(task, 'a big horse and a red apple', scoring)
    WHERE label = 'this'
$$;
CREATE FUNCTION pg_temp.same(a float8, b float8) RETURNS boolean LANGUAGE sql AS $$
    SELECT abs(a - b) < 1e-6
$$;

-- versions trained without a scoring store train_prompt's default
SELECT DISTINCT hyperparameters->>'scoring' AS stored FROM ptune.prompts WHERE task = 'toy';
SHOW ptune.scoring;

-- the two scorings: both sum to one, and they differ (rank also scores EOS,
-- over the whole vocabulary)
SELECT scoring, count(*) AS labels, round(sum(probability)::numeric, 5) AS total
FROM unnest(ARRAY['label_tokens', 'rank']) AS scoring, ptune.classify_scores('toy', 'a big horse', scoring)
GROUP BY scoring ORDER BY scoring;
SELECT pg_temp.same(pg_temp.p_this('toy'), pg_temp.p_this('toy', 'label_tokens')) AS default_is_stored,
       NOT pg_temp.same(pg_temp.p_this('toy', 'rank'), pg_temp.p_this('toy', 'label_tokens')) AS rank_differs,
       pg_temp.same(pg_temp.p_this('toy', 'Rank'), pg_temp.p_this('toy', 'rank')) AS any_case;

-- every form takes it: row, array, evaluate agree with each other in rank mode
SELECT ptune.classify('toy', array_agg(text ORDER BY id), 'rank')
       = array_agg(ptune.classify('toy', text, scoring => 'rank') ORDER BY id) AS array_matches_rows,
       (SELECT accuracy FROM ptune.evaluate('toy', 'toy', 'text', 'label', scoring => 'rank'))
       = avg((ptune.classify('toy', text, scoring => 'rank') = label)::int) AS evaluate_matches_rows,
       avg((ptune.classify('toy', text, scoring => 'rank') = label)::int) >= 0.8 AS rank_accurate
FROM toy;
SELECT ptune.classify('toy_ensemble', 'a dog', 'rank') IN ('this', 'that') AS ensemble_votes;

-- the setting overrides the stored mode; the argument overrides the setting
CREATE TEMP TABLE ref AS
    SELECT pg_temp.p_this('toy', 'label_tokens') AS label_tokens, pg_temp.p_this('toy', 'rank') AS rank;
SET ptune.scoring = 'rank';
SELECT pg_temp.same(pg_temp.p_this('toy'), rank) AS setting_over_stored,
       pg_temp.same(pg_temp.p_this('toy', 'label_tokens'), label_tokens) AS argument_over_setting
FROM ref;
-- parallel workers see the session's setting: the sum of probabilities
-- computed in the workers is the rank one
CREATE TABLE toy_par AS SELECT t.* FROM toy t, generate_series(1, 4);
ALTER TABLE toy_par SET (parallel_workers = 2);
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT sum(s.probability) FROM toy_par, ptune.classify_scores('toy', text) s WHERE s.label = 'this';
SELECT sum(s.probability) AS rank_sum FROM toy_par, ptune.classify_scores('toy', text, 'rank') s
WHERE s.label = 'this' \gset
SELECT sum(s.probability) AS label_tokens_sum FROM toy_par, ptune.classify_scores('toy', text, 'label_tokens') s
WHERE s.label = 'this' \gset
SELECT abs(sum(s.probability) - :rank_sum) < 1e-4 AS parallel_uses_setting,
       abs(:rank_sum - :label_tokens_sum) > 1e-3 AS sums_differ
FROM toy_par, ptune.classify_scores('toy', text) s WHERE s.label = 'this';
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
DROP TABLE toy_par;
RESET ptune.scoring;
SHOW ptune.scoring;

-- a version trained with scoring => 'rank' stores it, and classifies with it by default
SET client_min_messages = warning;
SELECT task, version, steps FROM ptune.train_prompt('toy_rank', 'toy', 'text', 'label', prompt_length => 4,
    init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, epochs => 0, max_steps => 5,
    ensemble_size => 2, max_input_tokens => 16, scoring => 'rank');
RESET client_min_messages;
SELECT member, hyperparameters->>'scoring' AS stored FROM ptune.prompts WHERE task = 'toy_rank' ORDER BY member;
SELECT pg_temp.same(pg_temp.p_this('toy_rank'), pg_temp.p_this('toy_rank', 'rank')) AS default_is_stored_rank,
       NOT pg_temp.same(pg_temp.p_this('toy_rank'), pg_temp.p_this('toy_rank', 'label_tokens')) AS modes_differ;
SET ptune.scoring = 'label_tokens';
SELECT pg_temp.same(pg_temp.p_this('toy_rank'), pg_temp.p_this('toy_rank', 'label_tokens')) AS setting_over_stored;
RESET ptune.scoring;

-- the stored mode is plain data: its owner may change it
BEGIN;
UPDATE ptune.prompts SET hyperparameters = hyperparameters || '{"scoring": "rank"}' WHERE task = 'toy' AND is_active;
SELECT pg_temp.same(pg_temp.p_this('toy'), pg_temp.p_this('toy', 'rank')) AS updated_default_applies;
ROLLBACK;
SELECT ptune.drop_task('toy_rank');

-- bad values: a clear error (SQLSTATE 22023 and a hint), also with a NULL input
SELECT pg_temp.error_of($$SELECT ptune.classify('toy', 'a dog', scoring => 'full')$$);
SELECT pg_temp.error_of($$SELECT ptune.classify('toy', NULL::text, 'full')$$);
SELECT pg_temp.error_of($$SELECT ptune.classify('toy', ARRAY['a dog'], scoring => '')$$);
SELECT pg_temp.error_of($$SELECT * FROM ptune.classify_scores('toy', 'a dog', 'exact_match')$$);
SELECT pg_temp.error_of($$SELECT * FROM ptune.evaluate('toy', 'toy', 'text', 'label', scoring => 'free')$$);
SELECT pg_temp.error_of($$SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', scoring => 'free')$$);
SELECT pg_temp.error_of($$SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', scoring => NULL)$$);
SELECT pg_temp.error_of($$SET ptune.scoring = 'free_decoding'$$);
-- a stored mode must be one of the two (a check constraint)
SELECT pg_temp.error_of($$UPDATE ptune.prompts SET hyperparameters = hyperparameters || '{"scoring": "full"}' WHERE task = 'toy'$$);
SELECT ptune.classify('toy', 'a dog') IN ('this', 'that') AS still_works;
