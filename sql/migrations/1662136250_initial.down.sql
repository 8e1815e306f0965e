-- initial: drop work, sessions, machines and the process enum.
DROP TABLE work;
DROP TABLE sessions;
DROP TABLE machines;
DROP TYPE process;
