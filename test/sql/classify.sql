-- Classification inside ordinary queries.
SELECT avg((ptune.classify('toy', text) = label)::int) >= 0.8 AS accurate FROM toy;
SELECT ptune.classify('toy', NULL) IS NULL AS null_gives_null;
SELECT ptune.classify('toy', '') IN ('this', 'that') AS empty_text_classified;
SELECT ptune.classify('toy', repeat('dog apple ', 1000000)) IN ('this', 'that') AS ten_megabytes;

-- the array form: one request for many rows, NULLs stay NULL
SELECT ptune.classify('toy', ARRAY['the dog sees a cat', NULL, 'an apple and a lemon']) IS NOT NULL AS answered,
       (ptune.classify('toy', ARRAY['the dog sees a cat', NULL, 'an apple and a lemon']))[2] IS NULL AS null_kept,
       cardinality(ptune.classify('toy', ARRAY[]::text[])) AS empty_array;
SELECT ptune.classify('toy', array_agg(text ORDER BY id)) = array_agg(ptune.classify('toy', text) ORDER BY id)
       AS array_matches_rows
FROM toy;

-- probabilities of every label, summing to one
SELECT count(*) AS labels, round(sum(probability)::numeric, 5) AS total
FROM ptune.classify_scores('toy', 'a big horse');
SELECT label FROM ptune.classify_scores('toy', 'a big horse') ORDER BY probability DESC LIMIT 1;
SELECT * FROM ptune.classify_scores('toy', NULL);

-- an ensemble votes
SELECT ptune.classify('toy_ensemble', text) IN ('this', 'that') AS voted FROM toy LIMIT 1;

-- parallel workers call classify too and get the same answers
CREATE TABLE toy_big AS SELECT t.* FROM toy t, generate_series(1, 4);
ALTER TABLE toy_big SET (parallel_workers = 2);
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT count(*) FROM toy_big WHERE ptune.classify('toy', text) = 'this';
SELECT count(*) = (SELECT count(*) FROM toy_big WHERE ptune.classify('toy', text) = 'this') AS parallel_agrees
FROM (SELECT ptune.classify('toy', array_agg(text)) AS l FROM toy_big) a, unnest(a.l) AS x WHERE x = 'this';
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
SELECT requests_served > 0 AS served, forward_passes > 0 AS batched, requests_failed AS failed FROM ptune.status();
