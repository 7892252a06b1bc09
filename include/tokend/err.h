/* SPDX-License-Identifier: MIT */
/*
 * This header defines the one error convention of tokend: actions return 0 or
 * a negative enum tokend_err. The mapping of an error to an HTTP status lives
 * in exactly one place, src/http/response.c (response_status_for()).
 */
#ifndef TOKEND_ERR_H
#define TOKEND_ERR_H

enum tokend_err {
	TOKEND_OK = 0,
	TOKEND_ENOMEM = -1,      /* allocation failed */
	TOKEND_EIO = -2,         /* file or socket error */
	TOKEND_EDB = -3,         /* the database failed or is unreachable (503) */
	TOKEND_ENOTFOUND = -4,   /* no such user, team, key, ... */
	TOKEND_EEXISTS = -5,     /* unique name taken */
	TOKEND_EINVAL = -6,      /* bad value from a caller (CLI, config, request) */
	TOKEND_ECRYPTO = -7,     /* OpenSSL / libjwt failed */
	TOKEND_EAUTH = -8,       /* credentials or token refused */
	TOKEND_EBUSY = -9,       /* a bounded queue is full; try later */
	TOKEND_ETIMEOUT = -10,   /* a deadline passed */
	TOKEND_ECONFLICT = -11,  /* the request conflicts with current state */
	TOKEND_EFORBIDDEN = -12, /* authenticated but not allowed */
	TOKEND_ETOOBIG = -13,    /* request body over its limit */
	TOKEND_EMEDIA = -14,     /* unsupported Content-Type */
	TOKEND_EMETHOD = -15,    /* path exists, method does not */
	TOKEND_EHEADER = -16,    /* request line + headers over their limit */
	TOKEND_EBADREQ = -17,    /* malformed HTTP framing */
	TOKEND_ENOTIMPL = -18,   /* e.g. an unknown Transfer-Encoding */
	TOKEND_ETHROTTLED = -19, /* a rate limit refused it: 429, retry_after seconds */
};

/* Returns a short constant English description of err; never NULL. */
const char *tokend_strerror(int err);

#endif
