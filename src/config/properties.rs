//! Java `.properties` parsing with line numbers. OWNER: config helper.
