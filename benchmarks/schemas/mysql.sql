-- The benchmark schema, MySQL flavour of benchmarks/schemas/mariadb.sql: the same
-- 20 tables, indexes, foreign keys, view, trigger and 1,065 seed rows; MySQL has no
-- Sequence engine, so each seed's numbers come from a recursive common table expression.

CREATE TABLE countries (
    id INT AUTO_INCREMENT PRIMARY KEY,
    code CHAR(2) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE cities (
    id INT AUTO_INCREMENT PRIMARY KEY,
    country_id INT NOT NULL,
    name VARCHAR(100) NOT NULL,
    KEY cities_country_idx (country_id),
    FOREIGN KEY (country_id) REFERENCES countries (id)
) ENGINE = InnoDB;

CREATE TABLE customers (
    id INT AUTO_INCREMENT PRIMARY KEY,
    city_id INT NOT NULL,
    email VARCHAR(200) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY customers_name_idx (name),
    FOREIGN KEY (city_id) REFERENCES cities (id)
) ENGINE = InnoDB;

CREATE TABLE addresses (
    id INT AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    city_id INT NOT NULL,
    line1 VARCHAR(200) NOT NULL,
    postcode VARCHAR(20) NOT NULL,
    KEY addresses_customer_idx (customer_id),
    FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE,
    FOREIGN KEY (city_id) REFERENCES cities (id)
) ENGINE = InnoDB;

CREATE TABLE categories (
    id INT AUTO_INCREMENT PRIMARY KEY,
    parent_id INT NULL,
    name VARCHAR(100) NOT NULL UNIQUE,
    FOREIGN KEY (parent_id) REFERENCES categories (id)
) ENGINE = InnoDB;

CREATE TABLE suppliers (
    id INT AUTO_INCREMENT PRIMARY KEY,
    country_id INT NOT NULL,
    name VARCHAR(200) NOT NULL,
    FOREIGN KEY (country_id) REFERENCES countries (id)
) ENGINE = InnoDB;

CREATE TABLE products (
    id INT AUTO_INCREMENT PRIMARY KEY,
    category_id INT NOT NULL,
    supplier_id INT NOT NULL,
    sku VARCHAR(40) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL,
    price DECIMAL(10, 2) NOT NULL CHECK (price >= 0),
    KEY products_category_idx (category_id),
    KEY products_supplier_idx (supplier_id),
    FOREIGN KEY (category_id) REFERENCES categories (id),
    FOREIGN KEY (supplier_id) REFERENCES suppliers (id)
) ENGINE = InnoDB;

CREATE TABLE tags (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL UNIQUE
) ENGINE = InnoDB;

CREATE TABLE product_tags (
    product_id INT NOT NULL,
    tag_id INT NOT NULL,
    PRIMARY KEY (product_id, tag_id),
    KEY product_tags_tag_idx (tag_id),
    FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE,
    FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE
) ENGINE = InnoDB;

CREATE TABLE warehouses (
    id INT AUTO_INCREMENT PRIMARY KEY,
    city_id INT NOT NULL,
    name VARCHAR(100) NOT NULL,
    FOREIGN KEY (city_id) REFERENCES cities (id)
) ENGINE = InnoDB;

CREATE TABLE inventory (
    warehouse_id INT NOT NULL,
    product_id INT NOT NULL,
    quantity INT NOT NULL DEFAULT 0,
    PRIMARY KEY (warehouse_id, product_id),
    KEY inventory_product_idx (product_id),
    FOREIGN KEY (warehouse_id) REFERENCES warehouses (id),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;

CREATE TABLE orders (
    id INT AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'new',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY orders_customer_created_idx (customer_id, created_at),
    KEY orders_status_idx (status),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB;

CREATE TABLE order_items (
    id INT AUTO_INCREMENT PRIMARY KEY,
    order_id INT NOT NULL,
    product_id INT NOT NULL,
    quantity INT NOT NULL CHECK (quantity > 0),
    unit_price DECIMAL(10, 2) NOT NULL,
    KEY order_items_order_idx (order_id),
    KEY order_items_product_idx (product_id),
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;

CREATE TABLE payments (
    id INT AUTO_INCREMENT PRIMARY KEY,
    order_id INT NOT NULL,
    amount DECIMAL(10, 2) NOT NULL,
    paid_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY payments_order_idx (order_id),
    FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB;

CREATE TABLE shipments (
    id INT AUTO_INCREMENT PRIMARY KEY,
    order_id INT NOT NULL,
    warehouse_id INT NOT NULL,
    tracking VARCHAR(40) NOT NULL UNIQUE,
    KEY shipments_order_idx (order_id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    FOREIGN KEY (warehouse_id) REFERENCES warehouses (id)
) ENGINE = InnoDB;

CREATE TABLE reviews (
    id INT AUTO_INCREMENT PRIMARY KEY,
    product_id INT NOT NULL,
    customer_id INT NOT NULL,
    rating INT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body TEXT,
    KEY reviews_product_idx (product_id),
    FOREIGN KEY (product_id) REFERENCES products (id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB;

CREATE TABLE coupons (
    id INT AUTO_INCREMENT PRIMARY KEY,
    code VARCHAR(20) NOT NULL UNIQUE,
    percent_off INT NOT NULL CHECK (percent_off BETWEEN 1 AND 100)
) ENGINE = InnoDB;

CREATE TABLE order_coupons (
    order_id INT NOT NULL,
    coupon_id INT NOT NULL,
    PRIMARY KEY (order_id, coupon_id),
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    FOREIGN KEY (coupon_id) REFERENCES coupons (id)
) ENGINE = InnoDB;

CREATE TABLE audit_log (
    id INT AUTO_INCREMENT PRIMARY KEY,
    table_name VARCHAR(50) NOT NULL,
    row_id INT NOT NULL,
    action VARCHAR(20) NOT NULL,
    at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY audit_log_row_idx (table_name, row_id)
) ENGINE = InnoDB;

CREATE VIEW order_totals AS
SELECT o.id AS order_id, o.customer_id, SUM(i.quantity * i.unit_price) AS total
FROM orders o JOIN order_items i ON i.order_id = o.id
GROUP BY o.id, o.customer_id;

-- MariaDB has no UPDATE OF <column>: the WHERE keeps the same meaning.
CREATE TRIGGER orders_status_audit AFTER UPDATE ON orders FOR EACH ROW
INSERT INTO audit_log (table_name, row_id, action)
SELECT 'orders', NEW.id, NEW.status FROM DUAL WHERE NOT (OLD.status <=> NEW.status);

-- Seed rows: the same 1,065 as the Postgres flavour.
INSERT INTO countries (code, name)
SELECT CONCAT(CHAR(64 + seq), CHAR(65 + seq)), CONCAT('Country ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 10)
    SELECT seq FROM numbers
) AS numbers_10;
INSERT INTO cities (country_id, name)
SELECT 1 + seq % 10, CONCAT('City ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 30)
    SELECT seq FROM numbers
) AS numbers_30;
INSERT INTO customers (city_id, email, name)
SELECT 1 + seq % 30, CONCAT('customer', seq, '@example.com'), CONCAT('Customer ', seq)
FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO addresses (customer_id, city_id, line1, postcode)
SELECT seq, 1 + seq % 30, CONCAT(seq, ' Main Street'), LPAD(seq, 5, '0') FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO categories (parent_id, name)
SELECT CASE WHEN seq > 3 THEN 1 + seq % 3 END, CONCAT('Category ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 10)
    SELECT seq FROM numbers
) AS numbers_10;
INSERT INTO suppliers (country_id, name)
SELECT 1 + seq % 10, CONCAT('Supplier ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 10)
    SELECT seq FROM numbers
) AS numbers_10;
INSERT INTO products (category_id, supplier_id, sku, name, price)
SELECT 1 + seq % 10, 1 + seq % 10, CONCAT('SKU-', seq), CONCAT('Product ', seq), (seq % 50) + 0.99
FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO tags (name) SELECT CONCAT('tag', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 20)
    SELECT seq FROM numbers
) AS numbers_20;
INSERT INTO product_tags (product_id, tag_id) SELECT seq, 1 + seq % 20 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO warehouses (city_id, name) SELECT seq, CONCAT('Warehouse ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 5)
    SELECT seq FROM numbers
) AS numbers_5;
INSERT INTO inventory (warehouse_id, product_id, quantity)
SELECT 1 + seq % 5, seq, seq * 3 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO orders (customer_id, status)
SELECT 1 + seq % 100, CASE seq % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END
FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 100)
    SELECT seq FROM numbers
) AS numbers_100;
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT 1 + seq % 100, 1 + (seq * 7) % 100, 1 + seq % 4, (seq % 50) + 0.99 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 150)
    SELECT seq FROM numbers
) AS numbers_150;
INSERT INTO payments (order_id, amount) SELECT seq * 2, (seq % 40) + 10.50 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 50)
    SELECT seq FROM numbers
) AS numbers_50;
INSERT INTO shipments (order_id, warehouse_id, tracking)
SELECT seq * 2, 1 + seq % 5, CONCAT('TRK', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 50)
    SELECT seq FROM numbers
) AS numbers_50;
INSERT INTO reviews (product_id, customer_id, rating, body)
SELECT seq, seq, 1 + seq % 5, CONCAT('Review ', seq) FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 50)
    SELECT seq FROM numbers
) AS numbers_50;
INSERT INTO coupons (code, percent_off) SELECT CONCAT('SAVE', seq), seq * 5 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 10)
    SELECT seq FROM numbers
) AS numbers_10;
INSERT INTO order_coupons (order_id, coupon_id) SELECT seq * 3, 1 + seq % 10 FROM (
    WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers WHERE seq < 20)
    SELECT seq FROM numbers
) AS numbers_20;
