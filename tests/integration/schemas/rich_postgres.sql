-- A schema with one of everything a copy must carry over.
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');

CREATE TABLE authors (
    id serial PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    mood mood NOT NULL DEFAULT 'ok',
    created_at timestamptz NOT NULL DEFAULT '2020-01-01 00:00:00+00',
    CONSTRAINT email_has_at CHECK (position('@' in email) > 1)
);
COMMENT ON TABLE authors IS 'people who write; the comment must survive';
COMMENT ON COLUMN authors.email IS 'case-insensitive';

CREATE TABLE posts (
    id bigserial PRIMARY KEY,
    author_id int NOT NULL REFERENCES authors (id) ON DELETE CASCADE,
    title text NOT NULL,
    body text,
    word_count int NOT NULL DEFAULT 0
);
CREATE INDEX posts_author_idx ON posts (author_id);
CREATE INDEX posts_title_lower_idx ON posts (lower(title)) WHERE body IS NOT NULL;

CREATE SEQUENCE invoice_numbers START 1000;
SELECT setval('invoice_numbers', 4242);

CREATE FUNCTION count_words(text) RETURNS int
    LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(array_length(regexp_split_to_array(trim($1), '\s+'), 1), 0) $$;

CREATE FUNCTION posts_set_word_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.word_count := count_words(coalesce(NEW.body, ''));
    RETURN NEW;
END;
$$;
CREATE TRIGGER posts_word_count BEFORE INSERT OR UPDATE ON posts
    FOR EACH ROW EXECUTE FUNCTION posts_set_word_count();

CREATE VIEW author_post_counts AS
    SELECT a.email, count(p.id) AS posts FROM authors a LEFT JOIN posts p ON p.author_id = a.id
    GROUP BY a.email;

INSERT INTO authors (email, mood) VALUES ('ada@example.com', 'happy'), ('bob@example.com', 'sad');
INSERT INTO posts (author_id, title, body)
    SELECT 1 + (g % 2), 'post ' || g, 'some words in post ' || g FROM generate_series(1, 50) AS g;

-- Database-level settings and grants: a clone does not carry these by itself.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET work_mem = %L', current_database(), '7MB');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'freshdb_test_reader') THEN
        CREATE ROLE freshdb_test_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO freshdb_test_reader', current_database());
END
$$;
