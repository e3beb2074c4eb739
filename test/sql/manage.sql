-- Versions, activation, plain SQL on the prompts table, explain, drop.
SELECT ptune.activate('toy', 1);
SELECT version, is_active FROM ptune.prompts WHERE task = 'toy' ORDER BY version;
SELECT ptune.activate('toy', 99);
SELECT ptune.activate('no_such_task', 1);

-- deactivating every version takes the task offline
SELECT ptune.deactivate('toy');
SELECT count(*) FILTER (WHERE is_active) AS active_versions FROM ptune.versions WHERE task = 'toy';
SELECT ptune.classify('toy', 'a dog');
SELECT ptune.activate('toy', 2);
SELECT ptune.classify('toy', 'a dog') IN ('this', 'that') AS classifies_again;

-- a corrupted prompt is a clear error, and nothing else breaks (a superuser may edit the rows)
BEGIN;
UPDATE ptune.prompts SET prompt = overlay(prompt placing '\xff'::bytea from 100 for 1) WHERE task = 'toy' AND is_active;
SELECT ptune.classify('toy', 'a dog');
ROLLBACK;
BEGIN;
UPDATE ptune.prompts SET prompt = substring(prompt from 1 for 40) WHERE task = 'toy' AND is_active;
SELECT ptune.classify('toy', 'a dog');
ROLLBACK;
SELECT ptune.classify('toy', 'a dog') IN ('this', 'that') AS still_works;

-- interpretability: nearest vocabulary pieces of each prompt position
SELECT count(*) AS rows, count(DISTINCT prompt_row) AS positions, max(rank) AS k,
       bool_and(similarity BETWEEN -1 AND 1) AS cosine
FROM ptune.explain_prompt('toy', 3);
SELECT count(DISTINCT member) AS members FROM ptune.explain_prompt('toy_ensemble', 1);

SELECT ptune.drop_task('toy_ensemble');
SELECT ptune.drop_task('toy_ensemble');
SELECT task FROM ptune.tasks ORDER BY task;
