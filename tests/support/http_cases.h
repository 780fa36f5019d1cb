/* http_cases.h — HTTP/1.1 messages for the parser's tests: valid ones and a
 * table of hostile ones, each with the verdict twirl's parser must give. The
 * unit tests, the differential test against libhttp_parser and the fuzz seed
 * corpora share them. */
#ifndef TWIRL_TEST_HTTP_CASES_H
#define TWIRL_TEST_HTTP_CASES_H

#include <stddef.h>

#include "twirl/http_parser.h"

typedef struct http_case {
    const char *name; /* unique, usable as a file name */
    const char *wire;
    size_t len;            /* wire may hold NUL bytes */
    int rc;                /* 0: a valid message; else TW_EPROTO or TW_ELIMIT */
    int status;            /* the status the parser must report with rc */
    tw_http_method method; /* responses: the request's method */
} http_case;

/* Request heads (a body may follow the head in wire). */
extern const http_case http_request_cases[];
extern const size_t http_request_cases_n;

/* Response heads, each answering a request with case.method. */
extern const http_case http_response_cases[];
extern const size_t http_response_cases_n;

/* Chunked bodies (what follows the head), decoded with default limits. For
 * valid ones, decoded is the expected body. */
typedef struct chunked_case {
    const char *name;
    const char *wire;
    size_t len;
    int rc; /* 0: valid */
    int status;
    const char *decoded;
    size_t ntrailers;
} chunked_case;
extern const chunked_case http_chunked_cases[];
extern const size_t http_chunked_cases_n;

#endif
