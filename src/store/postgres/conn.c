/* SPDX-License-Identifier: MIT */
/*
 * This module implements the connections of the PostgreSQL backend: open
 * and close, one libpq connection per calling thread (a pthread key, as the
 * SQLite backend keeps one per thread: a shared connection would share one
 * transaction), the prepared statements of each connection (prepared once,
 * at their first use, run with PQexecPrepared and text parameters), the
 * mapping of PostgreSQL's errors to ours, the pipeline of a write
 * transaction (libpq's pipeline mode: a round trip per answer waited for,
 * not per statement), and the readiness ping.
 *
 * A connection error never reads as an answer: the op that meets it
 * returns TOKEND_EDB (the HTTP layer answers 503) and marks the connection
 * broken, and the thread's next call reconnects (PQreset) before it runs.
 * Inside a write transaction the connection is not replaced: the
 * transaction is lost, so its remaining ops fail until write_end.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"
#include "tokend/util.h"

/*
 * A statement that runs longer than this is cancelled (57014, TOKEND_EBUSY):
 * no request should wait on the database for longer. Never below the lock
 * wait plus a second, so that a lock wait ends as a lock timeout first.
 */
#define PG_STATEMENT_TIMEOUT_MS 5000L
/*
 * Waiting for a server that does not answer at all (unless target says
 * otherwise): the connection, and unacknowledged data on an established
 * TCP connection (a server gone without a word), after which the op fails
 * instead of hanging its thread.
 */
#define PG_CONNECT_TIMEOUT_S "10"
#define PG_TCP_USER_TIMEOUT_MS "10000"
/*
 * After a connection fails, the ops of every thread fail at once (EDB, 503)
 * for this long instead of each waiting for its own attempt: a database
 * that is down costs no request the connect timeout.
 */
#define PG_RETRY_MS 1000

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *store_pg_i64(char buf[PG_I64_LEN], int64_t v)
{
	snprintf(buf, PG_I64_LEN, "%" PRId64, v);
	return buf;
}

void store_pg_where(PGconn *pg, char *out, size_t outlen)
{
	const char *host = pg ? PQhost(pg) : NULL;
	const char *dbname = pg ? PQdb(pg) : NULL;

	snprintf(out, outlen, "%s/%s", host && *host ? host : "?", dbname ? dbname : "?");
}

/*
 * The first line of msg for the log, every byte outside printable ASCII as
 * '?' (a server's message may quote input: no line may be forged).
 */
static void log_line(const char *msg, char *out, size_t outlen)
{
	size_t i = 0;

	for (; msg != NULL && msg[i] != '\0' && msg[i] != '\n' && i + 1 < outlen; i++)
		out[i] = msg[i] >= 0x20 && msg[i] < 0x7f ? msg[i] : '?';
	out[i] = '\0';
}

/* libpq prints the server's notices on stderr: they go to the debug log. */
static void notice_log(void *arg, const char *msg)
{
	char line[320];

	(void)arg;
	log_line(msg, line, sizeof(line));
	log_debug("store: server: %s", line);
}

/* Class 08 (connection exception) and 57P01..57P05 (the server going away). */
static bool sqlstate_is_connection(const char *st)
{
	return st == NULL || strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0;
}

int store_pg_error(struct store_pg_conn *c, const PGresult *r, const char *what)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	/* The primary message only: a DETAIL may quote a row (a password hash). */
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char line[320];
	char where[160];

	if (c->in_tx)
		c->failed = true;
	if (PQstatus(c->pg) != CONNECTION_OK || sqlstate_is_connection(st)) {
		c->broken = true;
		store_pg_where(c->pg, where, sizeof(where));
		log_line(msg ? msg : PQerrorMessage(c->pg), line, sizeof(line));
		log_error("store: %s: %s: connection lost (reconnecting at the next call): %s",
			  what, where, line);
		metrics_store_error();
		return TOKEND_EDB;
	}
	if (strcmp(st, "23505") == 0)
		return TOKEND_EEXISTS;
	if (strcmp(st, "23503") == 0)
		return TOKEND_ENOTFOUND;
	log_line(msg, line, sizeof(line));
	/* Division by zero: only tokens.c's refresh_use_locked divides, and
	 * only when the row it used under its lock was used by another. */
	if (strcmp(st, "22012") == 0) {
		log_warn("store: %s: the row changed under the transaction's lock", what);
		metrics_store_error();
		return TOKEND_EBUSY;
	}
	if (strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0) {
		log_warn("store: %s: %s (%s)", what, line, st);
		metrics_store_error(); /* busy counts, as SQLite's SQLITE_BUSY does */
		return TOKEND_EBUSY;
	}
	log_error("store: %s: %s (%s)", what, line, st);
	metrics_store_error();
	return TOKEND_EDB;
}

/* Prepares s on c unless it is already; 0 or an error (logged). */
static int prepare(struct store_pg_conn *c, const struct store_pg_stmt *s)
{
	char name[16];
	PGresult *r;
	int rc = 0;

	if (c->prepared[s->id])
		return 0;
	snprintf(name, sizeof(name), "t%d", (int)s->id);
	r = PQprepare(c->pg, name, s->sql, s->nparams, NULL);
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = store_pg_error(c, r, s->what);
	else
		c->prepared[s->id] = true;
	PQclear(r);
	return rc;
}

/*
 * A parameter that is not UTF-8 (a client's bytes): a lookup finds no row,
 * a change touches none, an insert is refused. Never an error of the
 * database: it would be a 503 and a logged error for any client to cause.
 */
static int not_text(struct store_pg_conn *c, const struct store_pg_stmt *s, PGresult **res)
{
	if (strncmp(s->sql, "INSERT", 6) == 0)
		return TOKEND_EINVAL;
	if (res == NULL)
		return 0;
	*res = PQmakeEmptyPGresult(c->pg, PGRES_TUPLES_OK);
	return *res != NULL ? 0 : TOKEND_ENOMEM;
}

/* true when some text parameter of s is not UTF-8 (see not_text). */
static bool params_not_text(const struct store_pg_stmt *s, const char *const *params)
{
	for (int i = 0; i < s->nparams; i++)
		if (((s->binary >> i) & 1u) == 0 && params[i] != NULL &&
		    !util_utf8_valid(params[i], strlen(params[i])))
			return true;
	return false;
}

/*
 * The write transaction's pipeline (libpq's pipeline mode). A transaction
 * costs a round trip per answer it waits for, not per statement: BEGIN
 * travels with the first statement, a statement nobody reads the answer of
 * (store_pg_defer) with the next one or with the COMMIT, and the first
 * statement's Parse with its execution. The server runs each command as it
 * arrives; an error makes it skip the rest up to the Sync (their results
 * are PGRES_PIPELINE_ABORTED), and the transaction is then failed. Only
 * writer.c's transactions are piped: a migration and every (db) lookup use
 * the connection as before, one statement, one answer.
 */
static const struct store_pg_stmt tx_begin = {PG_TX_BEGIN, "begin", "BEGIN", 0, 0};
static const struct store_pg_stmt tx_commit = {PG_TX_COMMIT, "commit", "COMMIT", 0, 0};
static const struct store_pg_stmt tx_rollback = {PG_TX_ROLLBACK, "rollback", "ROLLBACK", 0, 0};

/* Queues one command (Parse first if s is new to c); 0 or TOKEND_EDB (logged). */
static int pipe_send(struct store_pg_conn *c, const struct store_pg_stmt *s,
		     const char *const *params, const int *lens)
{
	int formats[16] = {0};
	char name[16];

	if (c->nsent + 2 > PG_PIPELINE_MAX ||
	    s->nparams > (int)(sizeof(formats) / sizeof(formats[0]))) {
		/* our bug: store_pg_defer syncs before the pipeline is full */
		log_error("store: %s: the pipeline is full", s->what);
		metrics_store_error();
		c->failed = true;
		return TOKEND_EDB;
	}
	snprintf(name, sizeof(name), "t%d", (int)s->id);
	if (!c->prepared[s->id]) {
		if (!PQsendPrepare(c->pg, name, s->sql, s->nparams, NULL))
			return store_pg_error(c, NULL, s->what);
		/* sent: a second use in this pipeline must not Parse it again */
		c->prepared[s->id] = true;
		c->sent[c->nsent++] = (struct store_pg_sent){s, true};
	}
	for (int i = 0; i < s->nparams; i++)
		formats[i] = (s->binary >> i) & 1u ? 1 : 0;
	if (!PQsendQueryPrepared(c->pg, name, s->nparams, params, lens, s->binary ? formats : NULL,
				 0))
		return store_pg_error(c, NULL, s->what);
	c->sent[c->nsent++] = (struct store_pg_sent){s, false};
	return 0;
}

/* Enters pipeline mode and queues the BEGIN, unless done already. */
static int pipe_open(struct store_pg_conn *c)
{
	if (c->begun)
		return 0;
	if (!PQenterPipelineMode(c->pg))
		return store_pg_error(c, NULL, "begin");
	c->begun = true;
	return pipe_send(c, &tx_begin, NULL, NULL);
}

/*
 * Syncs the pipeline and reads every answer in flight, in order. *last (if
 * not NULL) gets the result of the last command when it succeeded. Returns
 * 0 or the first error (logged, counted by store_pg_error; the transaction
 * is then failed). A connection lost meanwhile marks c broken: PQreset
 * leaves pipeline mode with the rest.
 */
static int pipe_sync(struct store_pg_conn *c, PGresult **last)
{
	int n = c->nsent;
	int rc = 0;
	PGresult *r;

	if (last != NULL)
		*last = NULL;
	c->nsent = 0;
	if (!PQpipelineSync(c->pg))
		return store_pg_error(c, NULL, n > 0 ? c->sent[n - 1].s->what : "commit");
	for (int i = 0; i < n; i++) {
		const struct store_pg_sent *p = &c->sent[i];
		ExecStatusType st;

		r = PQgetResult(c->pg);
		if (r == NULL) /* the connection is gone: nothing more will come */
			return store_pg_error(c, NULL, p->s->what);
		st = PQresultStatus(r);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
			if (!p->prepare && i == n - 1 && last != NULL)
				*last = r;
			else
				PQclear(r);
		} else {
			if (p->prepare)
				c->prepared[p->s->id] = false; /* not prepared after all */
			if (st != PGRES_PIPELINE_ABORTED && rc == 0)
				rc = store_pg_error(c, r, p->s->what);
			else if (rc == 0)
				rc = store_pg_error(c, NULL, p->s->what); /* aborted, not by us? */
			PQclear(r);
		}
		/* each command's results end with a NULL (one statement, one result) */
		for (int extra = 0; (r = PQgetResult(c->pg)) != NULL; extra++) {
			PQclear(r);
			if (extra >= 2) {
				c->broken = true; /* not libpq's protocol: start afresh */
				break;
			}
		}
		if (c->broken)
			break;
	}
	if (c->broken) {
		if (last != NULL && *last != NULL) {
			PQclear(*last);
			*last = NULL;
		}
		return rc != 0 ? rc : TOKEND_EDB;
	}
	r = PQgetResult(c->pg);
	if (r == NULL || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
		int e = store_pg_error(c, r, "pipeline sync");
		if (rc == 0)
			rc = e;
	}
	PQclear(r);
	if (rc != 0 && last != NULL && *last != NULL) {
		PQclear(*last);
		*last = NULL;
	}
	return rc;
}

int store_pg_defer(struct store_pg_conn *c, const struct store_pg_stmt *s,
		   const char *const *params, const int *lens)
{
	int rc;

	if (!c->piped)
		return store_pg_run(c, s, params, lens, NULL);
	if (c->broken || c->failed)
		return TOKEND_EDB; /* logged when it broke or failed */
	if (params_not_text(s, params))
		return not_text(c, s, NULL);
	rc = pipe_open(c);
	/* room for this command and, later, the COMMIT: else answer what is in flight */
	if (rc == 0 && c->nsent + 4 > PG_PIPELINE_MAX)
		rc = pipe_sync(c, NULL);
	if (rc == 0)
		rc = pipe_send(c, s, params, lens);
	return rc;
}

int store_pg_tx_end(struct store_pg_conn *c, bool commit)
{
	PGresult *r = NULL;
	int rc = 0;

	if (!c->begun)
		return 0; /* nothing was sent: there is nothing to commit or roll back */
	if (!c->broken && (commit || c->nsent > 0)) {
		rc = pipe_send(c, commit ? &tx_commit : &tx_rollback, NULL, NULL);
		if (rc == 0)
			rc = pipe_sync(c, &r);
		/* COMMIT of a failed transaction answers "ROLLBACK", without an error. */
		if (rc == 0 && commit && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
			log_error("store: commit: the server answered %s", PQcmdStatus(r));
			metrics_store_error();
			rc = TOKEND_EDB;
		}
		PQclear(r);
	}
	if (!c->broken && !PQexitPipelineMode(c->pg)) {
		/* our bug: answers left unread; a new connection is the safe state */
		int e = store_pg_error(c, NULL, "pipeline end");
		rc = rc != 0 ? rc : e;
		c->broken = true;
	}
	/*
	 * An error skips every command after it up to the Sync, a COMMIT or a
	 * ROLLBACK too: the transaction is left open and failed. End it.
	 */
	if (!c->broken && PQstatus(c->pg) == CONNECTION_OK &&
	    PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		r = PQexec(c->pg, "ROLLBACK");
		if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
			(void)store_pg_error(c, r, "rollback");
		PQclear(r);
	}
	if (c->broken && rc == 0)
		rc = TOKEND_EDB; /* logged when it broke */
	c->begun = false;
	c->nsent = 0;
	if (commit && rc == 0)
		metrics_store_commit();
	return commit ? rc : 0;
}

int store_pg_run(struct store_pg_conn *c, const struct store_pg_stmt *s, const char *const *params,
		 const int *lens, PGresult **res)
{
	int formats[16] = {0};
	char name[16];
	PGresult *r;
	int rc;

	if (res != NULL)
		*res = NULL;
	if (c->broken || (c->in_tx && c->failed))
		return TOKEND_EDB; /* logged when it broke or failed */
	if (s->nparams > (int)(sizeof(formats) / sizeof(formats[0])))
		return TOKEND_EDB; /* our bug: a statement with more parameters than this */
	if (params_not_text(s, params))
		return not_text(c, s, res);
	if (c->piped) {
		r = NULL; /* stays NULL unless the statement succeeded */
		rc = pipe_open(c);
		if (rc == 0)
			rc = pipe_send(c, s, params, lens);
		if (rc == 0)
			rc = pipe_sync(c, &r);
		if (res != NULL)
			*res = r;
		else
			PQclear(r);
		return rc;
	}
	for (int i = 0; i < s->nparams; i++)
		formats[i] = (s->binary >> i) & 1u ? 1 : 0;
	rc = prepare(c, s);
	if (rc != 0)
		return rc;
	snprintf(name, sizeof(name), "t%d", (int)s->id);
	r = PQexecPrepared(c->pg, name, s->nparams, params, lens, s->binary ? formats : NULL, 0);
	if (r != NULL &&
	    (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)) {
		if (res != NULL)
			*res = r;
		else
			PQclear(r);
		return 0;
	}
	rc = store_pg_error(c, r, s->what);
	PQclear(r);
	return rc;
}

int store_pg_change(struct store_pg_conn *c, const struct store_pg_stmt *s,
		    const char *const *params, const int *lens, long *changed)
{
	PGresult *r;
	int rc = store_pg_run(c, s, params, lens, &r);

	*changed = 0;
	if (rc != 0)
		return rc;
	*changed = strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return 0;
}

int store_pg_change1(struct store_pg_conn *c, const struct store_pg_stmt *s,
		     const char *const *params)
{
	long n;
	int rc = store_pg_change(c, s, params, NULL, &n);

	if (rc == 0 && n == 0)
		return TOKEND_ENOTFOUND;
	return rc;
}

int store_pg_int(struct store_pg_conn *c, const struct store_pg_stmt *s, const char *const *params,
		 bool *found, int64_t *v)
{
	PGresult *r;
	int rc = store_pg_run(c, s, params, NULL, &r);

	*found = false;
	*v = 0;
	if (rc != 0)
		return rc;
	if (PQntuples(r) > 0) {
		*found = true;
		*v = store_pg_get_i64(r, 0, 0);
	}
	PQclear(r);
	return 0;
}

void store_pg_copy(const PGresult *r, int row, int col, char *out, size_t outlen)
{
	const char *t = PQgetvalue(r, row, col);
	size_t n = (size_t)PQgetlength(r, row, col);

	if (n >= outlen)
		n = outlen - 1; /* cut, as snprintf would */
	if (n > 0)
		memcpy(out, t, n);
	out[n] = '\0';
}

int64_t store_pg_get_i64(const PGresult *r, int row, int col)
{
	const char *t = PQgetvalue(r, row, col);

	/* a boolean read as text is "t" or "f" */
	if (t[0] == 't')
		return 1;
	return strtoll(t, NULL, 10);
}

/*
 * The session's settings, after every (re)connection: how long a
 * statement may wait for a lock (busy_timeout_ms, the SQLite backend's
 * busy timeout: TOKEND_EBUSY after it) and may run at all.
 */
static int conn_setup(struct store_pg_conn *c)
{
	static const char sql[] = "SELECT set_config('lock_timeout', $1, false), "
				  "set_config('statement_timeout', $2, false)";
	long lock_ms = c->db->busy_timeout_ms > 0 ? c->db->busy_timeout_ms : 1;
	long stmt_ms = lock_ms + 1000 > PG_STATEMENT_TIMEOUT_MS ? lock_ms + 1000
								: PG_STATEMENT_TIMEOUT_MS;
	char a[PG_I64_LEN], b[PG_I64_LEN];
	const char *params[] = {store_pg_i64(a, lock_ms), store_pg_i64(b, stmt_ms)};
	PGresult *r = PQexecParams(c->pg, sql, 2, NULL, params, NULL, NULL, 0);
	int rc = 0;

	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = store_pg_error(c, r, "connection setup");
	PQclear(r);
	memset(c->prepared, 0, sizeof(c->prepared));
	/* a new session: PQreset left pipeline mode with the old one */
	c->begun = false;
	c->nsent = 0;
	c->broken = rc != 0;
	return rc;
}

/*
 * Connects to db->target. The target goes to libpq as it is (a URL or a
 * conninfo string, expanded by expand_dbname): a connect_timeout or an
 * application_name it sets wins over our defaults, which come before it.
 */
static int conn_connect(struct store_db *db, struct store_pg_conn **out, char *errbuf,
			size_t errlen)
{
	const char *const keys[] = {"connect_timeout",
				    "tcp_user_timeout",
				    "keepalives_idle",
				    "client_encoding",
				    "fallback_application_name",
				    "dbname",
				    NULL};
	const char *const vals[] = {PG_CONNECT_TIMEOUT_S,
				    PG_TCP_USER_TIMEOUT_MS,
				    "30",
				    "UTF8",
				    "tokend",
				    db->target,
				    NULL};
	struct store_pg_conn *c = calloc(1, sizeof(*c));
	char where[160], line[320];

	*out = NULL;
	if (c == NULL)
		return TOKEND_ENOMEM;
	c->db = db;
	c->tx.conn = c;
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
		store_pg_where(c->pg, where, sizeof(where));
		log_line(c->pg ? PQerrorMessage(c->pg) : "out of memory", line, sizeof(line));
		snprintf(errbuf, errlen, "%s: cannot connect: %s", where, line);
		PQfinish(c->pg);
		free(c);
		return TOKEND_EDB;
	}
	PQsetNoticeProcessor(c->pg, notice_log, NULL);
	if (conn_setup(c) != 0) {
		store_pg_where(c->pg, where, sizeof(where));
		snprintf(errbuf, errlen, "%s: cannot set the session's timeouts", where);
		PQfinish(c->pg);
		free(c);
		return TOKEND_EDB;
	}
	pthread_mutex_lock(&db->lock);
	c->next = db->conns;
	db->conns = c;
	pthread_mutex_unlock(&db->lock);
	*out = c;
	return 0;
}

static void conn_free(struct store_pg_conn *c)
{
	PQfinish(c->pg);
	free(c);
}

/* pthread key destructor: a thread that ends closes its connection. */
static void conn_release(void *p)
{
	struct store_pg_conn *c = p;
	struct store_db *db = c->db;
	struct store_pg_conn **pp;

	pthread_mutex_lock(&db->lock);
	for (pp = &db->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&db->lock);
	conn_free(c);
}

/* Reconnects a broken connection in place; 0 or TOKEND_EDB (logged, counted). */
static int conn_reconnect(struct store_pg_conn *c)
{
	char where[160], line[320];

	PQreset(c->pg);
	if (PQstatus(c->pg) != CONNECTION_OK) {
		store_pg_where(c->pg, where, sizeof(where));
		log_line(PQerrorMessage(c->pg), line, sizeof(line));
		log_error("store: %s: cannot reconnect: %s", where, line);
		metrics_store_error();
		return TOKEND_EDB;
	}
	if (conn_setup(c) != 0)
		return TOKEND_EDB; /* logged */
	store_pg_where(c->pg, where, sizeof(where));
	log_info("store: %s: reconnected", where);
	return 0;
}

/* A connection failed less than PG_RETRY_MS ago: fail at once (counted). */
static bool still_down(struct store_db *db)
{
	if (now_ms() >= atomic_load(&db->down_until_ms))
		return false;
	metrics_store_error();
	return true;
}

struct store_pg_conn *store_pg_conn(struct store_db *db)
{
	struct store_pg_conn *c = pthread_getspecific(db->key);
	char err[512];

	if (c == NULL) {
		if (still_down(db))
			return NULL;
		if (conn_connect(db, &c, err, sizeof(err)) != 0) {
			atomic_store(&db->down_until_ms, now_ms() + PG_RETRY_MS);
			log_error("store: %s", err);
			metrics_store_error();
			return NULL;
		}
		if (pthread_setspecific(db->key, c) != 0) {
			conn_release(c);
			return NULL;
		}
		return c;
	}
	if (!c->broken && PQstatus(c->pg) == CONNECTION_OK)
		return c;
	/* Not inside a transaction: a new connection would run its rest outside it. */
	if (c->in_tx || still_down(db))
		return NULL;
	if (conn_reconnect(c) != 0) {
		atomic_store(&db->down_until_ms, now_ms() + PG_RETRY_MS);
		return NULL;
	}
	return c;
}

struct store_pg_conn *store_pg_tx_conn(struct store_tx *tx)
{
	struct store_pg_conn *c = tx->conn;

	return c->broken ? NULL : c;
}

int store_pg_open(const char *target, long busy_timeout_ms, struct store_db **out, char *errbuf,
		  size_t errlen)
{
	struct store_db *db = calloc(1, sizeof(*db));
	struct store_pg_conn *c;
	int rc;

	*out = NULL;
	if (db == NULL)
		return TOKEND_ENOMEM;
	db->target = strdup(target);
	db->busy_timeout_ms = busy_timeout_ms;
	if (db->target == NULL || pthread_key_create(&db->key, conn_release) != 0) {
		free(db->target);
		free(db);
		return TOKEND_ENOMEM;
	}
	pthread_mutex_init(&db->lock, NULL);
	/* The opening thread's connection: a wrong target fails here, at start-up. */
	rc = conn_connect(db, &c, errbuf, errlen);
	if (rc != 0) {
		store_pg_close(db);
		return rc;
	}
	pthread_setspecific(db->key, c);
	*out = db;
	return 0;
}

void store_pg_close(struct store_db *db)
{
	if (db == NULL)
		return;
	/* Other threads have ended by now; close what they and we left. */
	pthread_setspecific(db->key, NULL);
	while (db->conns != NULL) {
		struct store_pg_conn *c = db->conns;
		db->conns = c->next;
		conn_free(c);
	}
	pthread_key_delete(db->key);
	pthread_mutex_destroy(&db->lock);
	if (db->target != NULL) {
		/* it may hold a password */
		memset(db->target, 0, strlen(db->target));
		free(db->target);
	}
	free(db);
}

/* Waits at most timeout_ms for the answer to the query sent on c; 0 or an error. */
static int await_result(struct store_pg_conn *c, long timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (PQisBusy(c->pg)) {
		struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0) {
			/* The answer may still come: drop the connection instead. */
			c->broken = true;
			log_warn("store: ping: no answer in %ld ms", timeout_ms);
			return TOKEND_EDB;
		}
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno != EINTR) {
			c->broken = true;
			return TOKEND_EDB;
		}
		if (n > 0 && !PQconsumeInput(c->pg))
			return store_pg_error(c, NULL, "ping");
	}
	return 0;
}

/*
 * Readiness: the server answers on this thread's connection within
 * timeout_ms and accepts writes (a standby, e.g. after a failover, does
 * not). One round trip; no lock is taken, so there is no EBUSY. The ping
 * of a broken connection reconnects it first.
 */
int store_pg_ping(struct store_db *db, long timeout_ms)
{
	struct store_pg_conn *c = store_pg_conn(db);
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB; /* counted */
	if (!PQsendQuery(c->pg, "SELECT pg_is_in_recovery()::int"))
		return store_pg_error(c, NULL, "ping"); /* counted */
	rc = await_result(c, timeout_ms);
	if (rc != 0) {
		metrics_store_error();
		return rc;
	}
	r = PQgetResult(c->pg);
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		rc = store_pg_error(c, r, "ping"); /* counted when EDB */
		if (rc != TOKEND_EDB)
			metrics_store_error();
	} else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0) {
		rc = TOKEND_EDB; /* a read-only standby */
		metrics_store_error();
	}
	PQclear(r);
	while ((r = PQgetResult(c->pg)) != NULL)
		PQclear(r);
	return rc;
}

const char *store_pg_local_path(struct store_db *db)
{
	(void)db;
	return ""; /* a server: nothing on this host to keep a counter beside */
}
