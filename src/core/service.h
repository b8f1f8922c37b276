/* service.h — the fields of a service definition (us_service_def) as rows: one row per field
 * says its key in a services file, its member in the replicated JSON, its type, where it lives,
 * its limits and its default. The defaults, the replicated form and the generic part of the
 * services-file parser (config.c) are all driven by these rows, so a new service key is one
 * field in model.h and one row in service.c (plus a parser in config.c when its value is not a
 * plain command, integer, duration, bool, enum or size).
 *
 * Pure: no I/O. The JSON form is what the FSM replicates and snapshots (fsm.h).
 */
#ifndef US_SERVICE_H
#define US_SERVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

typedef enum {
    US_FIELD_STRING,  /* char[size]; no generic services-file parser (its key needs one) */
    US_FIELD_COMMAND, /* char[US_CMD_MAX], a shell command */
    US_FIELD_INT,     /* int, an integer min..max */
    US_FIELD_MS,      /* int milliseconds, a duration: min 0 allows 0, min 1 asks for > 0 */
    US_FIELD_BOOL,    /* bool */
    US_FIELD_ENUM,    /* an enum (int-sized), one of names[] (its value is the index) */
    US_FIELD_SIZE,    /* int64_t bytes: "10M" */
    US_FIELD_LIST,    /* a counted array (nodes, vips, checks, env): to_json / from_json below */
} us_field_type;

enum {
    US_FIELD_REPEAT = 1 << 0,      /* the key may repeat in one section, each adding to a list */
    US_FIELD_NONEMPTY = 1 << 1,    /* a command that must not be empty */
    US_FIELD_JSON_DEFAULT = 1 << 2 /* absent from the JSON (older states): the default, not 0 */
};

typedef struct us_service_field {
    const char *key;  /* key in a services file; NULL = set by another row's key (proxy_port) */
    const char *json; /* member of the replicated JSON object */
    us_field_type type;
    size_t offset;            /* in us_service_def */
    size_t size;              /* STRING/COMMAND: buffer size */
    long min, max;            /* INT: range; MS: min 0 or 1 */
    int64_t def;              /* default of INT, MS, BOOL, ENUM, SIZE (strings and lists: empty) */
    const char *const *names; /* ENUM: names by value, NULL-terminated */
    unsigned flags;           /* US_FIELD_* */
    const char *needs;        /* the key is only meaningful with this other key */
    const char *example;      /* a valid non-default value in a services file (tests, docs) */
    /* LIST: the replicated form. from_json gets NULL when the member is absent; 0 or -1. */
    json_t *(*to_json)(const us_service_def *d);
    int (*from_json)(us_service_def *d, const json_t *v);
} us_service_field;

#define US_SERVICE_FIELDS_MAX 64

extern const us_service_field us_service_fields[];
extern const int us_service_n_fields;

/* The row of a services-file key, or NULL. */
const us_service_field *us_service_field_by_key(const char *key);

/* Every field at its default (model.h documents them); name, commands and lists empty. */
void us_service_defaults(us_service_def *d);

/* The replicated form: one JSON member per row that is not at its default, and "v": 2 (an
 * object without "v" has every member an older agent knew; one it did not know reads as 0, or as
 * the default where marked US_FIELD_JSON_DEFAULT). from_json: 0, or -1 when the object is not a
 * valid definition (bad name, too many list entries, a string that does not fit); *d is zeroed
 * first and may be partly filled on failure. */
json_t *us_service_def_to_json(const us_service_def *d);
int us_service_def_from_json(us_service_def *d, const json_t *j);

/* A digest (BLAKE2b, 16 bytes) of a definition as a command carries it, over its JSON values with
 * their types and in their order: equal digests mean the same text, so the FSM need not decode a
 * definition again that it holds already (fsm.c, apply_services_in_place). False (out zeroed) for
 * JSON nested deeper than 16 levels, which no definition is. */
#define US_DEF_DIGEST_LEN 16
bool us_service_json_digest(const json_t *j, unsigned char out[US_DEF_DIGEST_LEN]);

#endif
