-- Bad input gets a specific error, never a crash; the worker keeps serving.
\set VERBOSITY default
-- unknown, NULL and empty tasks
SELECT ptune.classify('no_such_task', 'text');
SELECT ptune.classify(NULL, 'text');
SELECT ptune.classify('', 'text');
SELECT * FROM ptune.classify_scores('no_such_task', 'text');
SELECT * FROM ptune.evaluate('no_such_task', 'toy', 'text', 'label');
SELECT * FROM ptune.explain_prompt('toy', 0);

-- training arguments
SELECT * FROM ptune.train_prompt(NULL, 'toy', 'text', 'label');
SELECT * FROM ptune.train_prompt('', 'toy', 'text', 'label');
SELECT * FROM ptune.train_prompt(repeat('x', 300), 'toy', 'text', 'label');
SELECT * FROM ptune.train_prompt('t', NULL, 'text', 'label');
SELECT * FROM ptune.train_prompt('t', 'no_such_table', 'text', 'label');
SELECT * FROM ptune.train_prompt('t', 'toy', 'no_such_column', 'label');
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', prompt_length => 0);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', prompt_length => 100000);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', learning_rate => -1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', learning_rate => 'NaN');
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', batch_size => 0);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', epochs => -1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', epochs => 0);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', validation_fraction => 1.5);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', ensemble_size => 1000);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', max_input_tokens => 1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', init => 'zeros');
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', optimizer => 'sgd');
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', seed => -5);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', weight_decay => 1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', weight_decay => 'NaN');
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', max_grad_norm => -1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', min_dim_size_to_factor => -1);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', min_dim_size_to_factor => NULL);
SELECT * FROM ptune.train_prompt('t', 'toy', 'text', 'label', adafactor_start_step => -1);

-- bad tables: empty, a single label, NULL texts and labels, long labels
CREATE TABLE no_rows (body text, class text);
SELECT * FROM ptune.train_prompt('t', 'no_rows', 'body', 'class');
CREATE TABLE one_label (body text, class text);
INSERT INTO one_label SELECT 'text ' || i, 'same' FROM generate_series(1, 10) i;
SELECT * FROM ptune.train_prompt('t', 'one_label', 'body', 'class');
CREATE TABLE all_null (body text, class text);
INSERT INTO all_null VALUES (NULL, 'a'), ('x', NULL), (NULL, NULL);
SELECT * FROM ptune.train_prompt('t', 'all_null', 'body', 'class');
CREATE TABLE long_label (body text, class text);
INSERT INTO long_label VALUES ('x', repeat('y', 300)), ('z', 'short');
SELECT * FROM ptune.train_prompt('t', 'long_label', 'body', 'class');

-- labels of any type are compared as text; NULL rows are skipped and counted
CREATE TABLE typed (body text, stars integer);
INSERT INTO typed SELECT text, CASE WHEN label = 'this' THEN 5 ELSE 1 END FROM toy;
INSERT INTO typed VALUES (NULL, 5), ('a cat', NULL);
SET client_min_messages = warning;
SELECT task, labels, train_rows FROM ptune.train_prompt('stars', 'typed', 'body', 'stars',
    prompt_length => 2, epochs => 0, max_steps => 2, max_input_tokens => 8);
RESET client_min_messages;
SELECT metrics->>'skipped_rows' AS skipped FROM ptune.prompts WHERE task = 'stars';
SELECT ptune.classify('stars', 'a cat') IN ('1', '5') AS classified;

-- nothing failed for good: the worker still serves
SELECT worker_state FROM ptune.status();
SELECT ptune.classify('toy', 'a dog') IN ('this', 'that') AS still_serving;
