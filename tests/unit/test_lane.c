#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "lane.h"

Test(glob, basics)
{
	cr_expect(cr_glob_match("*", ""));
	cr_expect(cr_glob_match("*", "anything/at/all"));
	cr_expect(cr_glob_match("*/critical", "payment-gateway/critical"));
	cr_expect_not(cr_glob_match("*/critical", "payment-gateway/critical2"));
	cr_expect(cr_glob_match("pay*/*", "payments/batch"));
	cr_expect(cr_glob_match("a?c", "abc"));
	cr_expect_not(cr_glob_match("a?c", "ac"));
	cr_expect(cr_glob_match("*a*b*c*", "xxaxxbxxcxx"));
	cr_expect_not(cr_glob_match("*a*b*c*", "xxaxxcxxbxx"));
	cr_expect_not(cr_glob_match("Batch", "batch"), "keys are case-sensitive");
	cr_expect(cr_glob_match_icase("*.Internal", "api.INTERNAL"), "host names are not");
}

Test(glob, pathological_pattern_is_fast)
{
	char s[4096];
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	/* Exponential for a naive recursive matcher; linear-ish here. */
	cr_expect_not(cr_glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
}

static struct cr_dest v4(const char *ip, int port)
{
	struct cr_dest d = {.family = AF_INET, .port = (uint16_t)port};
	inet_pton(AF_INET, ip, d.addr);
	return d;
}

static struct cr_hostrule rule4(const char *ip, int prefix, int port)
{
	struct cr_hostrule r = {.family = AF_INET, .prefix = prefix, .port = port};
	inet_pton(AF_INET, ip, r.addr);
	return r;
}

Test(hostrule, cidr_and_port)
{
	struct cr_hostrule r = rule4("127.0.0.0", 8, 8443);
	struct cr_dest a = v4("127.1.2.3", 8443), b = v4("127.1.2.3", 80), c = v4("10.0.0.1", 8443);
	cr_expect(cr_hostrule_match(&r, &a));
	cr_expect_not(cr_hostrule_match(&r, &b));
	cr_expect_not(cr_hostrule_match(&r, &c));
	struct cr_hostrule odd = rule4("192.168.4.0", 22, 0);
	struct cr_dest in = v4("192.168.7.255", 1), out = v4("192.168.8.0", 1);
	cr_expect(cr_hostrule_match(&odd, &in));
	cr_expect_not(cr_hostrule_match(&odd, &out));
}

Test(hostrule, mapped_ipv6_matches_ipv4_rule)
{
	struct cr_hostrule r = rule4("127.0.0.0", 8, 0);
	struct cr_dest d = {.family = AF_INET6, .port = 1};
	inet_pton(AF_INET6, "::ffff:127.0.0.1", d.addr);
	cr_expect(cr_hostrule_match(&r, &d));
}

Test(hostrule, names_only_match_names)
{
	struct cr_hostrule r = {.family = AF_UNSPEC, .port = 443};
	strcpy(r.name, "*.internal");
	struct cr_dest raw = v4("127.0.0.1", 443);
	struct cr_dest named = {.family = AF_UNSPEC, .port = 443, .host = "api.internal"};
	cr_expect_not(cr_hostrule_match(&r, &raw), "a raw connect has no name to match");
	cr_expect(cr_hostrule_match(&r, &named));
	struct cr_hostrule anyport = {.family = AF_UNSPEC, .port = 5432};
	strcpy(anyport.name, "*");
	struct cr_dest pg = v4("127.0.0.1", 5432);
	cr_expect(cr_hostrule_match(&anyport, &pg), "*:5432 matches any address on that port");
}

static struct cr_config *three_lanes(void)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	strcpy(cfg->lanes[0].name, "critical");
	strcpy(cfg->lanes[0].match[0], "payment-gateway/critical");
	strcpy(cfg->lanes[0].match[1], "*/critical");
	cfg->lanes[0].nmatch = 2;
	strcpy(cfg->lanes[1].name, "batch");
	cfg->lanes[1].hosts[0] = rule4("127.0.0.0", 8, 0);
	cfg->lanes[1].nhosts = 1;
	strcpy(cfg->lanes[2].name, "default");
	cfg->nlanes = 3;
	cfg->default_lane = 2;
	for (int i = 0; i < 3; i++)
		cfg->lanes[i].index = i;
	return cfg;
}

Test(select, first_match_wins_and_default_catches_the_rest)
{
	struct cr_config *cfg = three_lanes();
	struct cr_dest d = v4("127.0.0.1", 80), far = v4("10.1.1.1", 80);
	int un = -1;
	cr_expect_str_eq(cr_lane_select(cfg, "payment-gateway/critical", &d, &un)->name, "critical");
	cr_expect_eq(un, 0);
	cr_expect_str_eq(cr_lane_select(cfg, "fraud/critical+idempotent", &d, NULL)->name, "critical",
			 "flags do not take part in matching");
	cr_expect_str_eq(cr_lane_select(cfg, "batch", &d, NULL)->name, "batch",
			 "no match= means the key equal to the lane name");
	cr_expect_str_eq(cr_lane_select(cfg, "batch", &far, &un)->name, "default",
			 "the destination filter applies too");
	cr_expect_eq(un, 1);
	cr_expect_str_eq(cr_lane_select(cfg, "default", &d, NULL)->name, "default");
	cr_expect_str_eq(cr_lane_select(cfg, "nobody/knows", &d, &un)->name, "default");
	cr_expect_eq(un, 1);
	free(cfg);
}

Test(dest, from_sockaddr)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	struct sockaddr_storage un = {.ss_family = AF_UNIX};
	struct cr_dest d;
	inet_pton(AF_INET, "127.0.0.9", &sin.sin_addr);
	cr_expect_eq(cr_dest_from_sockaddr(&d, &sin, sizeof(sin)), 0);
	cr_expect_eq(d.port, 8080);
	cr_expect_eq(d.addr[3], 9);
	cr_expect_eq(cr_dest_from_sockaddr(&d, &sin6, sizeof(sin6)), 0);
	cr_expect_eq(d.family, AF_INET6);
	cr_expect_eq(cr_dest_from_sockaddr(&d, &sin, 4), -1, "short address");
	cr_expect_eq(cr_dest_from_sockaddr(&d, &un, sizeof(un)), -1);
	cr_expect_eq(cr_dest_from_sockaddr(&d, NULL, 0), -1);
}
