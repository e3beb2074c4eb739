-- The extension loads, the worker serves the generated test model.
CREATE EXTENSION ptune;
SELECT worker_state, worker_pid IS NOT NULL AS has_pid, queued, running FROM ptune.status();
SELECT model_name, length(fingerprint) AS fingerprint_chars, parameters,
       config->>'feed_forward_proj' AS ff, (config->>'d_model')::int AS d_model
FROM ptune.model_info();
-- the model path is a superuser setting that sessions cannot change
SET ptune.model_path = '/tmp';
SHOW ptune.batch_size;

-- A small task with a learnable signal: sentences that mention animals are
-- labelled 'this', sentences that mention fruit 'that'.
CREATE TABLE toy AS
SELECT i AS id,
       concat_ws(' ', filler[1 + (i * 7) % 15],
                 CASE WHEN i % 2 = 0 THEN animals[1 + (i * 3) % 5] ELSE fruits[1 + (i * 3) % 5] END,
                 filler[1 + (i * 11) % 15],
                 CASE WHEN i % 2 = 0 THEN animals[1 + (i * 13) % 5] ELSE fruits[1 + (i * 13) % 5] END,
                 filler[1 + (i * 5) % 15],
                 CASE WHEN i % 2 = 0 THEN animals[1 + i % 5] ELSE fruits[1 + i % 5] END) AS text,
       CASE WHEN i % 2 = 0 THEN 'this' ELSE 'that' END AS label
FROM generate_series(1, 160) AS i,
     (SELECT ARRAY['dog', 'cat', 'horse', 'bird', 'fish'] AS animals,
             ARRAY['apple', 'banana', 'orange', 'grape', 'lemon'] AS fruits,
             ARRAY['the', 'a', 'big', 'small', 'red', 'old', 'new', 'very', 'good', 'happy',
                   'people', 'see', 'like', 'today', 'here'] AS filler) AS words;
SELECT label, count(*) FROM toy GROUP BY label ORDER BY label;
