-- Training stores a new active version; learning is visible on a random model
-- with the settings that learn on random weights (see README).
-- Held-out rows (test_relation) take no part in training or in choosing the
-- checkpoint: test_accuracy is reported apart from selection_accuracy.
CREATE TABLE toy_heldout AS
SELECT i AS id,
       concat_ws(' ', 'the', CASE WHEN i % 2 = 0 THEN animals[1 + i % 5] ELSE fruits[1 + i % 5] END,
                 'here', CASE WHEN i % 2 = 0 THEN animals[1 + (i * 7) % 5] ELSE fruits[1 + (i * 7) % 5] END)
           AS text,
       CASE WHEN i % 2 = 0 THEN 'this' ELSE 'that' END AS label
FROM generate_series(1, 40) AS i,
     (SELECT ARRAY['dog', 'cat', 'horse', 'bird', 'fish'] AS animals,
             ARRAY['apple', 'banana', 'orange', 'grape', 'lemon'] AS fruits) AS words;
SET client_min_messages = warning;   -- progress NOTICEs carry timings
SELECT task, version, labels, train_rows, steps, selection_accuracy >= 0.8 AS learned,
       test_accuracy >= 0.75 AS generalizes, final_loss < 3 AS loss_fell
FROM ptune.train_prompt('toy', 'toy', 'text', 'label', prompt_length => 20, init => 'random_uniform',
                        optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
                        max_steps => 400, validation_fraction => 0.25, max_input_tokens => 16,
                        test_relation => 'toy_heldout');
RESET client_min_messages;
SELECT metrics->>'validation_rows' AS validation_rows, metrics->>'test_rows' AS test_rows,
       jsonb_typeof(metrics->'selection_accuracy') AS selection, jsonb_typeof(metrics->'test_accuracy') AS test,
       hyperparameters->>'test_relation' AS test_relation
FROM ptune.prompts WHERE task = 'toy';

SELECT task, version, member, is_active, prompt_length, d_model, labels, created_by::text = current_user AS mine,
       model_name, hyperparameters->>'optimizer' AS optimizer, (metrics->>'train_rows')::int AS train_rows,
       (metrics->>'validation_rows')::int AS validation_rows, octet_length(prompt) > 20 * 64 * 4 AS holds_values
FROM ptune.prompts ORDER BY task, version, member;
SELECT count(*) AS trainings_running FROM ptune.training_progress;

-- the same data and seed give the same prompt
SET client_min_messages = warning;
SELECT version FROM ptune.train_prompt('toy', 'toy', 'text', 'label', prompt_length => 20,
    init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
    max_steps => 400, validation_fraction => 0.25, max_input_tokens => 16);
RESET client_min_messages;
SELECT count(DISTINCT prompt) AS distinct_prompts, count(*) AS versions,
       sum(is_active::int) AS active FROM ptune.prompts WHERE task = 'toy';

-- an ensemble of three prompts, trained with the paper's default recipe
SET client_min_messages = warning;
SELECT task, version, labels, steps
FROM ptune.train_prompt('toy_ensemble', 'toy', 'text', 'label', prompt_length => 4, epochs => 1,
                        ensemble_size => 3, max_input_tokens => 16);
RESET client_min_messages;
SELECT version, member, is_active, hyperparameters->>'init' AS init, hyperparameters->>'optimizer' AS optimizer
FROM ptune.prompts WHERE task = 'toy_ensemble' ORDER BY member;

-- without validation rows nothing chooses a checkpoint: selection_accuracy is NULL, and JSON null
SET client_min_messages = warning;
SELECT task, selection_accuracy IS NULL AS no_selection, test_accuracy IS NULL AS no_test
FROM ptune.train_prompt('toy_novalidation', 'toy', 'text', 'label', prompt_length => 2, epochs => 0,
                        max_steps => 2, validation_fraction => 0, max_input_tokens => 8);
RESET client_min_messages;
SELECT metrics->>'validation_rows' AS validation_rows, jsonb_typeof(metrics->'selection_accuracy') AS selection,
       jsonb_typeof(metrics->'test_accuracy') AS test
FROM ptune.prompts WHERE task = 'toy_novalidation';
SELECT ptune.drop_task('toy_novalidation');
DROP TABLE toy_heldout;
SELECT task, active_version, versions, owner::text = current_user AS mine, labels FROM ptune.tasks ORDER BY task;

-- the optimizer's options: the defaults are T5X's Adafactor for the paper (stored as
-- null = the optimizer's default), ptune's earlier behaviours are options
SELECT hyperparameters->'weight_decay' AS weight_decay, hyperparameters->'max_grad_norm' AS max_grad_norm,
       hyperparameters->'min_dim_size_to_factor' AS min_dim, hyperparameters->'adafactor_start_step' AS start_step
FROM ptune.prompts WHERE task = 'toy_ensemble' AND member = 0;
SET client_min_messages = warning;
SELECT task, version, steps
FROM ptune.train_prompt('toy_options', 'toy', 'text', 'label', prompt_length => 4, epochs => 0,
                        max_steps => 2, max_input_tokens => 16, weight_decay => 3e-6, max_grad_norm => 1,
                        min_dim_size_to_factor => 0, adafactor_start_step => 1100000);
RESET client_min_messages;
SELECT hyperparameters->'weight_decay' AS weight_decay, hyperparameters->'max_grad_norm' AS max_grad_norm,
       hyperparameters->'min_dim_size_to_factor' AS min_dim, hyperparameters->'adafactor_start_step' AS start_step
FROM ptune.prompts WHERE task = 'toy_options';
SELECT ptune.drop_task('toy_options');
