/* SPDX-License-Identifier: MIT */
/* This module implements tokend_strerror(): one phrase per enum tokend_err. */
#include "tokend/err.h"

const char *tokend_strerror(int err)
{
	switch (err) {
	case TOKEND_OK: return "success";
	case TOKEND_ENOMEM: return "out of memory";
	case TOKEND_EIO: return "input/output error";
	case TOKEND_EDB: return "database error";
	case TOKEND_ENOTFOUND: return "not found";
	case TOKEND_EEXISTS: return "already exists";
	case TOKEND_EINVAL: return "invalid value";
	case TOKEND_ECRYPTO: return "cryptographic failure";
	case TOKEND_EAUTH: return "not authenticated";
	case TOKEND_EBUSY: return "busy";
	case TOKEND_ETHROTTLED: return "throttled";
	case TOKEND_ETIMEOUT: return "timed out";
	case TOKEND_ECONFLICT: return "conflict";
	case TOKEND_EFORBIDDEN: return "forbidden";
	case TOKEND_ETOOBIG: return "too large";
	case TOKEND_EMEDIA: return "unsupported media type";
	case TOKEND_EMETHOD: return "method not allowed";
	case TOKEND_EHEADER: return "header too large";
	case TOKEND_EBADREQ: return "bad request";
	case TOKEND_ENOTIMPL: return "not implemented";
	default: return "unknown error";
	}
}
