-- Evaluation on the training table and on another table (a domain shift check).
SELECT rows, accuracy >= 0.8 AS accurate, macro_f1 >= 0.8 AS balanced,
       (SELECT sum(v::int) FROM jsonb_each(confusion) AS t(k, r), jsonb_each_text(r) AS p(l, v)) AS counted
FROM ptune.evaluate('toy', 'toy', 'text', 'label');

CREATE TABLE shifted (body text, class text);
INSERT INTO shifted VALUES ('my dog and my cat', 'this'), ('a lemon', 'that'),
    ('fish', 'this'), (NULL, 'that'), ('grape', NULL), ('a horse', 'unseen label');
SELECT rows, jsonb_object_keys(confusion) AS true_labels
FROM ptune.evaluate('toy', 'shifted', 'body', 'class') ORDER BY 2;

-- an empty table
CREATE TABLE empty_table (body text, class text);
SELECT rows, accuracy, macro_f1, confusion FROM ptune.evaluate('toy', 'empty_table', 'body', 'class');
