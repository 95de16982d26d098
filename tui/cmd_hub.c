/* cmd_hub.c: `optstudio hub ...`: import, list, show, rm and drafts over the local hub. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_spec.h"
#include "hub_ops.h"

static const char hub_help[] =
	"usage: optstudio hub <subcommand> [options]\n"
	"\n"
	"The local model hub (hub.db in the data home).\n"
	"\n"
	"subcommands:\n"
	"  import PATH [--name N] [--json]  add a GGUF file or a Hugging Face folder\n"
	"  list [--json]                    every model, by name\n"
	"  show NAME [--json]               one model's card: shape, tokenizer, file, drafts\n"
	"  rm NAME                          remove from the hub (files the studio did not\n"
	"                                   create are never deleted)\n"
	"  drafts NAME [--json]             hub models with an identical vocabulary,\n"
	"                                   smallest first: candidate draft models\n"
	"  recommend-draft MODEL [--json]   the draft `run --draft recommended` picks, and why\n";

/* Options every hub subcommand understands; `name` only for import. */
typedef struct hub_args {
	bool json;
	const char *name;
	const char *positional;
} hub_args;

static int parse_hub_args(const char *sub, int argc, char **argv, bool wants_positional,
			  bool takes_name, hub_args *out)
{
	static const struct option long_opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"name", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char cmd[64];
	snprintf(cmd, sizeof cmd, "hub %s", sub);
	memset(out, 0, sizeof *out);
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "jn:h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			out->json = true;
			break;
		case 'n':
			if (!takes_name)
				return cli_usage_error(cmd, "--name is only for 'hub import'");
			out->name = optarg;
			break;
		default:
			return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		}
	}
	int n_pos = argc - optind;
	if (wants_positional && n_pos != 1)
		return cli_usage_error(cmd, n_pos ? "expected one argument, got %d" : "missing argument%.0d",
				       n_pos);
	if (!wants_positional && n_pos != 0)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	out->positional = wants_positional ? argv[optind] : NULL;
	return EXIT_OK;
}

static void json_add_str(cJSON *o, const char *key, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

static cJSON *model_to_json(const store_model *m)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "id", (double)m->id);
	json_add_str(o, "name", m->name);
	json_add_str(o, "path", m->path);
	json_add_str(o, "source_path", m->source_path);
	cJSON_AddBoolToObject(o, "owned_by_studio", m->owned_by_studio);
	json_add_str(o, "format", m->format);
	json_add_str(o, "architecture", m->architecture);
	cJSON_AddNumberToObject(o, "n_params", (double)m->n_params);
	cJSON_AddNumberToObject(o, "context_length", (double)m->context_length);
	cJSON_AddNumberToObject(o, "n_layers", (double)m->n_layers);
	cJSON_AddNumberToObject(o, "n_heads", (double)m->n_heads);
	cJSON_AddNumberToObject(o, "n_kv_heads", (double)m->n_kv_heads);
	cJSON_AddNumberToObject(o, "hidden_size", (double)m->hidden_size);
	cJSON_AddNumberToObject(o, "ffn_size", (double)m->ffn_size);
	cJSON_AddNumberToObject(o, "vocab_size", (double)m->vocab_size);
	json_add_str(o, "tokenizer_kind", m->tokenizer_kind);
	json_add_str(o, "vocab_hash", m->vocab_hash);
	json_add_str(o, "precision", m->precision);
	cJSON_AddNumberToObject(o, "file_size", (double)m->file_size);
	json_add_str(o, "sha256", m->sha256);
	json_add_str(o, "license", m->license);
	if (m->parent_model_id)
		cJSON_AddNumberToObject(o, "parent_model_id", (double)m->parent_model_id);
	else
		cJSON_AddNullToObject(o, "parent_model_id");
	cJSON_AddNumberToObject(o, "created_at", (double)m->created_at);
	return o;
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "—";
}

static int hub_import_cmd(store *s, const hub_args *a)
{
	store_model m = {0};
	int existed = 0;
	os_error err = {0};
	if (hub_import(s, a->positional, a->name, &m, &existed, &err) != OS_OK)
		return cli_fail(&err, "cannot import '%s'", a->positional);
	int rc = EXIT_OK;
	if (a->json) {
		cJSON *o = model_to_json(&m);
		if (o)
			cJSON_AddBoolToObject(o, "already_imported", existed);
		rc = cli_print_json(o);
	} else if (existed) {
		printf("'%s' is already in the hub as %s\n", a->positional, m.name);
	} else {
		char params[32], size[32];
		hub_format_params(m.n_params, params, sizeof params);
		hub_format_bytes(m.file_size, size, sizeof size);
		printf("imported %s: %s, %s parameters, %s, %s\n", m.name, or_dash(m.architecture),
		       params, or_dash(m.precision), size);
	}
	store_model_clear(&m);
	return rc;
}

static int hub_list_cmd(store *s, const hub_args *a)
{
	store_model *v = NULL;
	size_t n = 0;
	os_error err = {0};
	if (store_model_list(s, &v, &n, &err) != OS_OK)
		return cli_fail(&err, "cannot list the hub");
	int rc = EXIT_OK;
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; arr && i < n; i++)
			cJSON_AddItemToArray(arr, model_to_json(&v[i]));
		rc = cli_print_json(arr);
	} else if (n == 0) {
		printf("The hub is empty. Add a model with 'optstudio hub import PATH', or fetch the "
		       "demo model with 'make models'.\n");
	} else {
		printf("%-32s %-8s %8s %11s  %-10s %7s\n", "NAME", "ARCH", "PARAMS", "SIZE",
		       "PRECISION", "CTX");
		for (size_t i = 0; i < n; i++) {
			char params[32], size[32];
			hub_format_params(v[i].n_params, params, sizeof params);
			hub_format_bytes(v[i].file_size, size, sizeof size);
			printf("%-32s %-8s %8s %11s  %-10s %7lld\n", v[i].name, or_dash(v[i].architecture),
			       params, size, or_dash(v[i].precision), (long long)v[i].context_length);
		}
	}
	store_model_list_free(v, n);
	return rc;
}

/* The hub models sharing m's vocabulary, m itself left out. */
static int list_drafts(store *s, const store_model *m, store_model **v, size_t *n, os_error *err)
{
	*v = NULL;
	*n = 0;
	if (!m->vocab_hash)
		return OS_OK;
	int rc = store_model_list_by_vocab(s, m->vocab_hash, v, n, err);
	if (rc != OS_OK)
		return rc;
	size_t kept = 0;
	for (size_t i = 0; i < *n; i++) {
		if ((*v)[i].id == m->id)
			store_model_clear(&(*v)[i]);
		else
			(*v)[kept++] = (*v)[i];
	}
	*n = kept;
	return OS_OK;
}

static int hub_show_cmd(store *s, const hub_args *a)
{
	store_model m = {0};
	os_error err = {0};
	if (store_model_get(s, a->positional, &m, &err) != OS_OK)
		return cli_fail(&err, "cannot show '%s'", a->positional);
	store_model *drafts = NULL;
	size_t n_drafts = 0;
	if (list_drafts(s, &m, &drafts, &n_drafts, &err) != OS_OK) {
		store_model_clear(&m);
		return cli_fail(&err, "cannot list drafts for '%s'", a->positional);
	}
	int rc = EXIT_OK;
	if (a->json) {
		cJSON *o = model_to_json(&m);
		cJSON *arr = o ? cJSON_AddArrayToObject(o, "compatible_drafts") : NULL;
		for (size_t i = 0; arr && i < n_drafts; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(drafts[i].name));
		rc = cli_print_json(o);
	} else {
		char params[32], size[32];
		hub_format_params(m.n_params, params, sizeof params);
		hub_format_bytes(m.file_size, size, sizeof size);
		printf("%s\n", m.name);
		printf("  architecture  %s\n", or_dash(m.architecture));
		printf("  parameters    %s (%lld)\n", params, (long long)m.n_params);
		printf("  layers        %lld\n", (long long)m.n_layers);
		printf("  hidden size   %lld\n", (long long)m.hidden_size);
		printf("  heads         %lld (%lld KV heads)\n", (long long)m.n_heads,
		       (long long)m.n_kv_heads);
		printf("  ffn size      %lld\n", (long long)m.ffn_size);
		printf("  vocabulary    %lld (%s, hash %.12s)\n", (long long)m.vocab_size,
		       or_dash(m.tokenizer_kind), or_dash(m.vocab_hash));
		printf("  context       %lld tokens\n", (long long)m.context_length);
		printf("  precision     %s\n", or_dash(m.precision));
		printf("  format        %s\n", or_dash(m.format));
		printf("  file          %s\n", or_dash(m.path));
		printf("  size          %s (%lld bytes)\n", size, (long long)m.file_size);
		printf("  sha256        %s\n", or_dash(m.sha256));
		printf("  license       %s\n", or_dash(m.license));
		printf("  drafts        ");
		if (n_drafts == 0)
			printf("no other hub model shares this vocabulary\n");
		for (size_t i = 0; i < n_drafts; i++)
			printf("%s%s", drafts[i].name, i + 1 < n_drafts ? ", " : "\n");
	}
	store_model_list_free(drafts, n_drafts);
	store_model_clear(&m);
	return rc;
}

static int hub_rm_cmd(store *s, const hub_args *a)
{
	store_model m = {0};
	os_error err = {0};
	if (store_model_delete(s, a->positional, &m, &err) != OS_OK)
		return cli_fail(&err, "cannot remove '%s'", a->positional);
	int rc = EXIT_OK;
	if (m.owned_by_studio && m.path) {
		if (unlink(m.path) != 0) {
			cli_error("removed '%s' from the hub, but could not delete its file '%s'", m.name,
				  m.path);
			rc = EXIT_FAIL;
		} else {
			printf("removed %s and deleted %s\n", m.name, m.path);
		}
	} else {
		printf("removed %s from the hub (its file %s is left as it is)\n", m.name,
		       or_dash(m.path));
	}
	store_model_clear(&m);
	return rc;
}

static int hub_drafts_cmd(store *s, const hub_args *a)
{
	store_model m = {0};
	os_error err = {0};
	if (store_model_get(s, a->positional, &m, &err) != OS_OK)
		return cli_fail(&err, "cannot find drafts for '%s'", a->positional);
	store_model *v = NULL;
	size_t n = 0;
	if (list_drafts(s, &m, &v, &n, &err) != OS_OK) {
		store_model_clear(&m);
		return cli_fail(&err, "cannot find drafts for '%s'", a->positional);
	}
	int rc = EXIT_OK;
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; arr && i < n; i++)
			cJSON_AddItemToArray(arr, model_to_json(&v[i]));
		rc = cli_print_json(arr);
	} else if (n == 0) {
		printf("No other hub model shares %s's vocabulary (%.12s); import one, or use a "
		       "quantized copy of the model itself as its draft.\n",
		       m.name, or_dash(m.vocab_hash));
	} else {
		printf("%-32s %8s %-10s\n", "DRAFT", "PARAMS", "PRECISION");
		for (size_t i = 0; i < n; i++) {
			char params[32];
			hub_format_params(v[i].n_params, params, sizeof params);
			printf("%-32s %8s %-10s\n", v[i].name, params, or_dash(v[i].precision));
		}
	}
	store_model_list_free(v, n);
	store_model_clear(&m);
	return rc;
}

static int hub_recommend_draft_cmd(store *s, const hub_args *a)
{
	return spec_hub_recommend_draft(s, a->positional, a->json);
}

typedef struct hub_subcommand {
	const char *name;
	bool wants_positional;
	bool takes_name;
	int (*run)(store *s, const hub_args *a);
} hub_subcommand;

static const hub_subcommand hub_subcommands[] = {
	{"import", true, true, hub_import_cmd},
	{"list", false, false, hub_list_cmd},
	{"show", true, false, hub_show_cmd},
	{"rm", true, false, hub_rm_cmd},
	{"drafts", true, false, hub_drafts_cmd},
	{"recommend-draft", true, false, hub_recommend_draft_cmd},
};

int cmd_hub(int argc, char **argv)
{
	if (argc < 2) {
		fputs(hub_help, stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(hub_help, stdout);
		return EXIT_OK;
	}
	const hub_subcommand *sub = NULL;
	for (size_t i = 0; i < sizeof hub_subcommands / sizeof hub_subcommands[0]; i++)
		if (strcmp(argv[1], hub_subcommands[i].name) == 0)
			sub = &hub_subcommands[i];
	if (!sub)
		return cli_usage_error("hub", "unknown subcommand '%s'", argv[1]);
	if (cli_wants_help(argc - 1, argv + 1)) {
		fputs(hub_help, stdout);
		return EXIT_OK;
	}
	hub_args a;
	int rc = parse_hub_args(sub->name, argc - 1, argv + 1, sub->wants_positional, sub->takes_name,
				&a);
	if (rc != EXIT_OK)
		return rc;
	store *s;
	os_error err = {0};
	if (hub_open(&s, &err) != OS_OK)
		return cli_fail(&err, "cannot open the hub");
	rc = sub->run(s, &a);
	store_close(s);
	return rc;
}
