-- Text to text: training on free-text targets (objective => 'generation'),
-- ptune.generate with a task's prompt or the frozen model alone, its bounds
-- and privileges, and what each kind of prompt does with the other function.

-- A synthetic generation task that a frozen random model plus a prompt can
-- learn: the target text is chosen by the input's class (animal or fruit)
-- and has 2 or 3 pieces; exact match by chance is about 0 (the whole
-- vocabulary competes at every step), knowing the targets but not the class
-- about 0.5.
CREATE TABLE gen_toy AS
SELECT id, text, CASE WHEN label = 'this' THEN 'this that' ELSE 'that this this' END AS target FROM toy;
CREATE TABLE gen_heldout AS
SELECT i AS id,
       concat_ws(' ', 'the', CASE WHEN i % 2 = 0 THEN animals[1 + i % 5] ELSE fruits[1 + i % 5] END,
                 'here', CASE WHEN i % 2 = 0 THEN animals[1 + (i * 7) % 5] ELSE fruits[1 + (i * 7) % 5] END)
           AS text,
       CASE WHEN i % 2 = 0 THEN 'this that' ELSE 'that this this' END AS target
FROM generate_series(1, 40) AS i,
     (SELECT ARRAY['dog', 'cat', 'horse', 'bird', 'fish'] AS animals,
             ARRAY['apple', 'banana', 'orange', 'grape', 'lemon'] AS fruits) AS words;
-- the same rows with class labels, for the classification task 'toy'
CREATE TABLE toy_heldout_gen AS
SELECT text, CASE WHEN target = 'this that' THEN 'this' ELSE 'that' END AS target FROM gen_heldout;
SET client_min_messages = warning;   -- progress NOTICEs carry timings
SELECT task, version, labels, train_rows, selection_accuracy >= 0.85 AS learned,
       test_accuracy >= 0.75 AS generalizes
FROM ptune.train_prompt('gen', 'gen_toy', 'text', 'target', objective => 'generation',
                        prompt_length => 50, init => 'random_uniform', optimizer => 'adam',
                        learning_rate => 0.1, batch_size => 16, epochs => 0, max_steps => 300,
                        validation_fraction => 0.25, max_input_tokens => 16,
                        test_relation => 'gen_heldout');
RESET client_min_messages;
SELECT version, labels, hyperparameters->>'objective' AS objective,
       hyperparameters->>'label_column' AS target_column, (metrics->>'validation_rows')::int AS validation_rows
FROM ptune.prompts WHERE task = 'gen';
-- classification tasks say so too
SELECT DISTINCT hyperparameters->>'objective' AS objective FROM ptune.prompts WHERE task = 'toy' AND is_active;

-- Exact match through SQL, on rows that took no part in training
SELECT count(*) AS rows, avg((ptune.generate('gen', text) = target)::int) >= 0.75 AS exact_match_high
FROM gen_heldout;
SELECT ptune.generate('gen', 'the dog here cat') AS animal, ptune.generate('gen', 'the apple here lemon') AS fruit;
-- the array form answers as the one-text form does, NULL elements give NULL
SELECT ptune.generate('gen', ARRAY['the dog here cat', NULL, 'the apple here lemon']) AS generated;
SELECT (SELECT array_agg(ptune.generate('gen', text) ORDER BY id) FROM gen_heldout) =
       ptune.generate('gen', (SELECT array_agg(text ORDER BY id) FROM gen_heldout)) AS same;
SELECT ptune.generate('gen', '{}'::text[]) AS empty_array;
-- NULL in, NULL out
SELECT ptune.generate('gen', NULL::text) IS NULL AS null_text, ptune.generate('gen', NULL::text[]) IS NULL AS null_array;
-- max_new_tokens bounds the output (EOS included): one token is one piece
SELECT ptune.generate('gen', 'the dog here cat', 1) AS one_token, ptune.generate('gen', 'the apple here lemon', 2) AS two_tokens;
-- beam search maximises the length-penalised score (README, "Generation"),
-- which on this small random model need not be greedy's answer; one beam is greedy
SELECT ptune.generate('gen', 'the dog here cat', num_beams => 4) <> '' AS beams_answer,
       ptune.generate('gen', ARRAY['the apple here lemon'], 16, 3) IS NOT NULL AS beams_array,
       ptune.generate('gen', 'the apple here lemon', num_beams => 1) = ptune.generate('gen', 'the apple here lemon')
           AS one_beam_is_greedy;
-- a huge input is cut to the prompt's token budget, like classify's
SELECT ptune.generate('gen', 'the dog here cat ' || repeat('x ', 5000000)) <> '' AS huge_input_answered;
-- many rows in parallel workers: STABLE PARALLEL SAFE, batched in the worker
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SELECT count(*) FILTER (WHERE ptune.generate('gen', text) = target) >= 0.75 * count(*) AS parallel_exact
FROM gen_heldout;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;

-- task NULL: the frozen model alone, no prompt (deterministic, whatever it says)
SELECT ptune.generate(NULL, 'the dog here cat') IS NOT NULL AS frozen,
       ptune.generate(NULL, 'the dog here cat') = ptune.generate(NULL, 'the dog here cat') AS deterministic,
       ptune.generate(NULL, ARRAY['a', NULL]) IS NOT NULL AS frozen_array;

-- A classification prompt decodes freely with generate (the paper's evaluation)
SELECT ptune.generate('toy', 'the dog here cat', 4) IS NOT NULL AS classification_prompt_decodes;
-- but an ensemble has no single prompt to decode with
SELECT ptune.generate('toy_ensemble', 'the dog here cat');
-- a generation prompt has no labels to classify with
SELECT ptune.classify('gen', 'the dog here cat');
SELECT ptune.classify('gen', ARRAY['the dog here cat']);
SELECT * FROM ptune.classify_scores('gen', 'the dog here cat');

-- Bad input: clear errors (22023 with the bound, 22004 for NULL)
\set VERBOSITY default
SELECT ptune.generate('gen', 'a dog', 0);
SELECT ptune.generate('gen', 'a dog', 513);
SELECT ptune.generate('gen', 'a dog', NULL);
SELECT ptune.generate('gen', 'a dog', 8, 0);
SELECT ptune.generate('gen', 'a dog', 8, 17);
SELECT ptune.generate('gen', ARRAY['a dog'], 8, 17);
SELECT ptune.generate('gen', 'a dog', 8, NULL);
SELECT ptune.generate('no_such_task', 'a dog');
SELECT ptune.generate('', 'a dog');
SELECT ptune.generate('gen', ARRAY[['a', 'b'], ['c', 'd']]);
-- training options of the generation objective
SELECT * FROM ptune.train_prompt('gen2', 'gen_toy', 'text', 'target', objective => 'translation');
SELECT * FROM ptune.train_prompt('gen2', 'gen_toy', 'text', 'target', objective => 'generation', ensemble_size => 2);
SELECT * FROM ptune.train_prompt('gen2', 'gen_toy', 'text', 'target', objective => NULL);
-- one target for every row is fine for generation (a classifier needs two labels)
CREATE TABLE gen_one_target AS SELECT text, 'the same'::text AS target FROM toy;
SET client_min_messages = warning;
SELECT task, labels, train_rows FROM ptune.train_prompt('gen_one', 'gen_one_target', 'text', 'target',
    objective => 'generation', prompt_length => 2, epochs => 0, max_steps => 1, max_input_tokens => 8);
RESET client_min_messages;
SELECT ptune.drop_task('gen_one');
\set VERBOSITY terse

-- Evaluation by decoding: exact match, SQuAD's token F1
SELECT rows, exact_match >= 0.75 AS exact, f1 >= exact_match AS f1_counts_partial_answers,
       invalid_outputs IS NULL AS no_label_set
FROM ptune.evaluate_generation('gen', 'gen_heldout', 'text', 'target');
SELECT exact_match = (SELECT avg((ptune.generate('gen', text, 8) = target)::int) FROM gen_heldout) AS same_as_generate
FROM ptune.evaluate_generation('gen', 'gen_heldout', 'text', 'target', max_new_tokens => 8);
-- F1 forgives case and punctuation ('This that!' scores 1) and credits partial
-- answers ('this that' against 'this' scores 2/3); exact match does neither
CREATE TABLE gen_partial (text text, target text);
INSERT INTO gen_partial VALUES ('the dog here cat', 'This that!'), ('the dog here cat', 'this'),
    (NULL, 'x'), ('the apple here lemon', NULL);
SELECT rows, exact_match, round(f1::numeric, 4) AS f1, invalid_outputs
FROM ptune.evaluate_generation('gen', 'gen_partial', 'text', 'target');
-- a classification task decoded freely (the paper's metric): an output that is
-- none of the labels counts as wrong, and invalid_outputs counts them
SELECT rows, invalid_outputs = (SELECT count(*) FROM toy_heldout_gen h
                                WHERE ptune.generate('toy', h.text) NOT IN ('this', 'that')) AS invalid_counted,
       exact_match = (SELECT avg((ptune.generate('toy', h.text) = h.target)::int) FROM toy_heldout_gen h)
           AS exact_counted
FROM ptune.evaluate_generation('toy', 'toy_heldout_gen', 'text', 'target');
-- the frozen model (task NULL) has no label set either; an empty table has no scores
SELECT rows, invalid_outputs FROM ptune.evaluate_generation(NULL, 'gen_heldout', 'text', 'target', 4);
CREATE TABLE gen_empty (text text, target text);
SELECT * FROM ptune.evaluate_generation('gen', 'gen_empty', 'text', 'target');
-- classification's evaluate refuses a generation task, with the way out
SELECT * FROM ptune.evaluate('gen', 'gen_heldout', 'text', 'target');
SELECT * FROM ptune.evaluate_generation('gen', 'gen_heldout', 'text', 'target', 0);
SELECT * FROM ptune.evaluate_generation('gen', 'gen_heldout', 'text', 'no_such_column');

-- A timeout interrupts a long decoding; the worker then serves the next request
SET ptune.request_timeout = 50;
SELECT ptune.generate(NULL, (SELECT array_agg('the dog here cat ' || i) FROM generate_series(1, 5000) i), 512);
RESET ptune.request_timeout;
SELECT ptune.generate('gen', 'the dog here cat') AS after_timeout;
SELECT pg_sleep(0.5);
SELECT queued, running, rows_generated > 0 AS counted FROM ptune.status();

-- Privileges: generating with a task needs what classifying with it needs
-- (README, "Security model"): the owner's privileges, or SELECT on ptune.prompts.
CREATE ROLE ptune_gen_other LOGIN;
REVOKE SELECT ON ptune.prompts FROM PUBLIC;
SET ROLE ptune_gen_other;
SELECT ptune.generate('gen', 'the dog here cat');
SELECT ptune.generate('gen', ARRAY['the dog here cat']);
SELECT ptune.classify('toy', 'the dog here cat');
-- the frozen model needs no task and so no privilege on one
SELECT ptune.generate(NULL, 'the dog here cat') IS NOT NULL AS frozen_ok;
RESET ROLE;
GRANT SELECT ON ptune.prompts TO ptune_gen_other;
SET ROLE ptune_gen_other;
SELECT ptune.generate('gen', 'the dog here cat') AS with_select;
-- evaluation reads the table with the caller's privileges
SELECT * FROM ptune.evaluate_generation('gen', 'gen_heldout', 'text', 'target');
RESET ROLE;
REVOKE SELECT ON ptune.prompts FROM ptune_gen_other;
GRANT SELECT ON ptune.prompts TO PUBLIC;
DROP ROLE ptune_gen_other;

-- a generation task (no labels) travels to another server like a classification task:
-- the import generates what the original does
SELECT task, version, members, labels FROM ptune.import_task(ptune.export_task('gen'), 'gen_copy');
SELECT count(*) AS rows, count(*) FILTER (WHERE ptune.generate('gen', text) = ptune.generate('gen_copy', text))
       AS same_text
FROM gen_heldout;
SELECT ptune.drop_task('gen_copy');

-- leave the tasks as the later tests expect them
SELECT ptune.drop_task('gen');
