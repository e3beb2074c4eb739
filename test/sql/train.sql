-- Training stores a new active version; learning is visible on a random model
-- with the settings that learn on random weights (see README).
SET client_min_messages = warning;   -- progress NOTICEs carry timings
SELECT task, version, labels, train_rows, steps, validation_accuracy >= 0.8 AS learned,
       final_loss < 3 AS loss_fell
FROM ptune.train_prompt('toy', 'toy', 'text', 'label', prompt_length => 20, init => 'random_uniform',
                        optimizer => 'adam', learning_rate => 0.1, batch_size => 16, epochs => 0,
                        max_steps => 400, validation_fraction => 0.25, max_input_tokens => 16);
RESET client_min_messages;

SELECT task, version, member, is_active, prompt_length, d_model, labels, created_by = current_user AS mine,
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
SELECT task, active_version, versions, owner = current_user AS mine, labels FROM ptune.tasks ORDER BY task;

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
