/* connroute: the access-log keys of the config (lib/config_alog.c): their
 * parsers and dumpers for the key tables, the [global] defaults and the
 * inheritance of [global] values by the lanes (docs/access-log.md).
 * Not for use outside lib/config*.c (and their unit tests). */
#ifndef CR_CONFIG_ALOG_H
#define CR_CONFIG_ALOG_H

#include "config_int.h"

/* lane keys */
int cr_cfg_set_access_log(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			  const char *v);
int cr_cfg_set_alog_sample(struct parse *p, struct cr_lane *l, const struct cr_lane_key *k,
			   const char *v);
void cr_cfg_dump_access_log(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);
void cr_cfg_dump_alog_sample(const struct cr_lane *l, const struct cr_lane_key *k, FILE *out);

/* [global] keys */
int cr_cfg_set_g_access_log(struct parse *p, const char *v);
int cr_cfg_set_g_alog_sample(struct parse *p, const char *v);
int cr_cfg_set_g_alog_slow(struct parse *p, const char *v);
int cr_cfg_set_g_alog_query(struct parse *p, const char *v);
int cr_cfg_set_g_alog_mode(struct parse *p, const char *v);
int cr_cfg_set_g_alog_buffer(struct parse *p, const char *v);
void cr_cfg_dump_g_access_log(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_g_alog_sample(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_g_alog_slow(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_g_alog_query(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_g_alog_mode(const struct cr_config *cfg, FILE *out);
void cr_cfg_dump_g_alog_buffer(const struct cr_config *cfg, FILE *out);

/* The [global] defaults (a config's header is zeroed first). */
void cr_cfg_alog_defaults(struct cr_config *cfg);

/* At the end of a load (cr_config_finish): what L left unset takes the
 * [global] value; derives L->alog_on, and a logging lane is never
 * pass-through (its raw connects are logged). Idempotent. */
void cr_cfg_alog_finish(const struct cr_config *cfg, struct cr_lane *l);

#endif
