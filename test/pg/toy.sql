-- The toy task of the scripted tests: sentences that mention animals are
-- labelled 'this', sentences that mention fruit 'that' (test/sql/setup.sql
-- builds a longer variant for pg_regress).
CREATE TABLE toy AS
SELECT i AS id,
       concat_ws(' ', f[1 + (i * 7) % 15],
                 CASE WHEN i % 2 = 0 THEN a[1 + (i * 3) % 5] ELSE b[1 + (i * 3) % 5] END,
                 f[1 + (i * 11) % 15],
                 CASE WHEN i % 2 = 0 THEN a[1 + (i * 13) % 5] ELSE b[1 + (i * 13) % 5] END) AS text,
       CASE WHEN i % 2 = 0 THEN 'this' ELSE 'that' END AS label
FROM generate_series(1, 160) AS i,
     (SELECT ARRAY['dog', 'cat', 'horse', 'bird', 'fish'] AS a,
             ARRAY['apple', 'banana', 'orange', 'grape', 'lemon'] AS b,
             ARRAY['the', 'a', 'big', 'small', 'red', 'old', 'new', 'very', 'good', 'happy',
                   'people', 'see', 'like', 'today', 'here'] AS f) AS words;
