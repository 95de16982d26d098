/* cmd_doctor.c: `optstudio doctor [--json]`: what this machine offers optstudio (CPU model
 * and SIMD features, cores, memory, CUDA devices, linked library versions, the data home). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <cJSON.h>
#include <curses.h>
#include <sqlite3.h>
#include <sched.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cli.h"
#include "core/cpu/cpu_features.h"
#include "core/cpu/kernels.h"
#include "store/store.h"
#ifdef OPTSTUDIO_CUDA
#include "gpu/gpu.h"
#endif

#define DEMO_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

/* CPU features the kernels care about, by name, and where cpu_features keeps each. */
static const struct {
	const char *name;
	size_t offset;
} cpu_feature_fields[] = {
	{"avx2", offsetof(cpu_features, avx2)},
	{"fma", offsetof(cpu_features, fma)},
	{"f16c", offsetof(cpu_features, f16c)},
	{"avx512f", offsetof(cpu_features, avx512f)},
	{"avx512bw", offsetof(cpu_features, avx512bw)},
	{"avx512vl", offsetof(cpu_features, avx512vl)},
	{"avx512_vnni", offsetof(cpu_features, avx512vnni)},
	{"avx512_bf16", offsetof(cpu_features, avx512bf16)},
	{"amx_tile", offsetof(cpu_features, amx_tile)},
	{"amx_int8", offsetof(cpu_features, amx_int8)},
	{"amx_bf16", offsetof(cpu_features, amx_bf16)},
};
#define N_CPU_FEATURES (sizeof cpu_feature_fields / sizeof cpu_feature_fields[0])

static bool feature_has(const cpu_features *f, size_t i)
{
	return *(const bool *)((const char *)f + cpu_feature_fields[i].offset);
}

typedef struct doctor_report {
	char cpu_model[256];
	char arch[65];
	cpu_features features;          /* cpuid + xgetbv (what the OS lets us run) */
	const char *kernels;            /* the CPU kernel set picked (static), NULL on error */
	char kernels_why[512];          /* why none, e.g. a bad $OPTSTUDIO_CPU */
	long cores_online, cores_usable;
	unsigned long long mem_total, mem_available;  /* bytes; 0 when unknown */
	const char *cpu_env;            /* $OPTSTUDIO_CPU, borrowed from the environment, or NULL */
	bool amx_granted;               /* Linux gave this process the AMX tile state */

	bool cuda_built;
	int cuda_runtime, cuda_driver;  /* 1000 * major + 10 * minor; 0 when unknown or none */
	int n_devices;
	char cuda_why[512];             /* why no device, empty when devices were found */
#ifdef OPTSTUDIO_CUDA
	gpu_device_props *devices;      /* n_devices entries, owned */
#endif

	char home[4096];                /* the data home, empty when it cannot be named */
	char home_why[512];             /* why it cannot be named */
	bool home_exists, model_present, calib_present, heldout_present;
} doctor_report;

static void print_help(FILE *out)
{
	fprintf(out,
		"usage: optstudio doctor [--json]\n\n"
		"Reports what this machine offers optstudio: the CPU model and its SIMD features\n"
		"(AVX2, AVX-512, VNNI, BF16, AMX), cores, memory, whether the CUDA backend is built in\n"
		"and which devices it sees (or why none), the versions of the linked libraries, and\n"
		"the data home with the demo model fetched by 'make models'.\n\n"
		"options:\n"
		"  --json      one JSON object on stdout instead of the table\n"
		"  -h, --help  this help\n");
}

/* The value of "key<spaces>: value" in a /proc file line, or NULL. */
static char *proc_value(char *line, const char *key)
{
	size_t n = strlen(key);
	if (strncmp(line, key, n) != 0 || (line[n] != ' ' && line[n] != '\t' && line[n] != ':'))
		return NULL;
	char *colon = strchr(line + n, ':');
	if (!colon)
		return NULL;
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	v[strcspn(v, "\n")] = '\0';
	return v;
}

static void collect_cpu(doctor_report *r)
{
	struct utsname u;
	snprintf(r->arch, sizeof r->arch, "%s", uname(&u) == 0 ? u.machine : "unknown");
	snprintf(r->cpu_model, sizeof r->cpu_model, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		/* lines can be long (the flags line is well over 1 KB): read them with getline */
		char *line = NULL;
		size_t cap = 0;
		while (getline(&line, &cap, f) > 0) {
			char *v = proc_value(line, "model name");
			if (v) {
				snprintf(r->cpu_model, sizeof r->cpu_model, "%s", v);
				break;
			}
		}
		free(line);
		fclose(f);
	}

	cpu_features_detect(&r->features);
	os_error err;
	os_error_clear(&err);
	const cpu_kernel_set *ks = NULL;
	if (cpu_kernels_select(&ks, &err) == OS_OK)
		r->kernels = ks->name;
	else
		snprintf(r->kernels_why, sizeof r->kernels_why, "%s", os_error_text(&err));

	r->cores_online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	r->cores_usable = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : r->cores_online;
	r->amx_granted = cpu_amx_enable();
	r->cpu_env = getenv("OPTSTUDIO_CPU");
	if (r->cpu_env && !*r->cpu_env)
		r->cpu_env = NULL;
}

static void collect_memory(doctor_report *r)
{
	struct sysinfo si;
	if (sysinfo(&si) == 0)
		r->mem_total = (unsigned long long)si.totalram * si.mem_unit;
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		char *v = proc_value(line, "MemAvailable");
		if (v) {
			r->mem_available = strtoull(v, NULL, 10) * 1024ull; /* the file says kB */
			break;
		}
	}
	fclose(f);
}

static void collect_cuda(doctor_report *r)
{
#ifdef OPTSTUDIO_CUDA
	os_error err;
	os_error_clear(&err);
	r->cuda_built = true;
	if (gpu_versions(&r->cuda_runtime, &r->cuda_driver, &err) != OS_OK) {
		snprintf(r->cuda_why, sizeof r->cuda_why, "%s", os_error_text(&err));
		return;
	}
	int n = 0;
	if (gpu_device_count(&n, &err) != OS_OK) {
		snprintf(r->cuda_why, sizeof r->cuda_why, "%s", os_error_text(&err));
		return;
	}
	if (n == 0) {
		snprintf(r->cuda_why, sizeof r->cuda_why, "the driver reports no device");
		return;
	}
	r->devices = calloc((size_t)n, sizeof *r->devices);
	if (!r->devices) {
		snprintf(r->cuda_why, sizeof r->cuda_why, "out of memory listing %d devices", n);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (gpu_device_info(i, &r->devices[i], &err) != OS_OK) {
			snprintf(r->cuda_why, sizeof r->cuda_why, "device %d: %s", i, os_error_text(&err));
			break;
		}
		r->n_devices = i + 1;
	}
#else
	r->cuda_built = false;
	snprintf(r->cuda_why, sizeof r->cuda_why,
		 "not built in (built without nvcc on the PATH, or with CUDA=0)");
#endif
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file_in(const char *dir, const char *rel)
{
	char path[4200];
	struct stat st;
	int n = snprintf(path, sizeof path, "%s/%s", dir, rel);
	return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The data home (store_home_resolve) and what `make models` put there. Leaves r->home empty
 * and says why in r->home_why when it cannot be named. */
static void collect_home(doctor_report *r)
{
	os_error err;
	os_error_clear(&err);
	if (store_home_resolve(r->home, sizeof r->home, &err) != OS_OK) {
		r->home[0] = '\0';
		snprintf(r->home_why, sizeof r->home_why, "%s", os_error_text(&err));
		return;
	}
	r->home_exists = is_dir(r->home);
	r->model_present = is_file_in(r->home, "models/" DEMO_MODEL_FILE);
	r->calib_present = is_file_in(r->home, "text/calibration.txt");
	r->heldout_present = is_file_in(r->home, "text/heldout.txt");
}

/* "13.0" from 13000; "none" for 0. buf holds at least 16 bytes. */
static const char *cuda_version_text(int v, char *buf, size_t size)
{
	if (v <= 0)
		return "none";
	snprintf(buf, size, "%d.%d", v / 1000, (v % 1000) / 10);
	return buf;
}

static void print_row(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void print_row(const char *key, const char *fmt, ...)
{
	va_list ap;
	printf("  %-14s ", key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void print_table(const doctor_report *r)
{
	const double gib = 1024.0 * 1024.0 * 1024.0;
	char have[256] = "", lack[256] = "";
	for (size_t i = 0; i < N_CPU_FEATURES; i++) {
		char *dst = feature_has(&r->features, i) ? have : lack;
		size_t used = strlen(dst);
		snprintf(dst + used, sizeof have - used, "%s%s", used ? " " : "", cpu_feature_fields[i].name);
	}

	printf("optstudio doctor\n");
	print_row("CPU", "%s (%s)", r->cpu_model, r->arch);
	print_row("CPU features", "%s", *have ? have : "none of the SIMD sets optstudio uses");
	if (*lack)
		print_row("", "missing: %s", lack);
	print_row("", "OS saves AVX state: %s, AVX-512 state: %s, AMX tile state: %s",
		  r->features.os_avx ? "yes" : "no", r->features.os_avx512 ? "yes" : "no",
		  r->features.os_amx ? "yes" : "no");
	if (r->kernels)
		print_row("CPU kernels", "%s (%s)", r->kernels,
			  r->cpu_env ? "forced by OPTSTUDIO_CPU" : "the fastest this CPU runs");
	else
		print_row("CPU kernels", "none: %s", r->kernels_why);
	/* a CPU with tiles the process cannot use is worth a word: the amx set is then missing */
	if (r->features.amx_tile)
		print_row("AMX tiles", "%s",
			  r->amx_granted ? "usable: the amx kernel set runs BF16 and INT8 matrix "
					   "products of a few tokens or more on them"
			  : !r->features.os_amx ? "not usable: the OS does not save the tile state"
						: "not usable: Linux did not grant the tile state "
						  "(arch_prctl; Linux 5.16 or later)");
	print_row("cores", "%ld online, %ld usable by this process", r->cores_online, r->cores_usable);
	if (r->mem_available)
		print_row("memory", "%.1f GiB total, %.1f GiB available", r->mem_total / gib,
			  r->mem_available / gib);
	else
		print_row("memory", "%.1f GiB total", r->mem_total / gib);

	char rt[16], dv[16];
	if (!r->cuda_built) {
		print_row("CUDA", "%s", r->cuda_why);
	} else {
		print_row("CUDA", "built in (runtime %s, driver %s)",
			  cuda_version_text(r->cuda_runtime, rt, sizeof rt),
			  cuda_version_text(r->cuda_driver, dv, sizeof dv));
		if (r->n_devices == 0)
			print_row("GPUs", "none: %s", r->cuda_why);
		else
			print_row("GPUs", "%d", r->n_devices);
	}
#ifdef OPTSTUDIO_CUDA
	for (int i = 0; i < r->n_devices; i++) {
		const gpu_device_props *d = &r->devices[i];
		char key[16];
		snprintf(key, sizeof key, "GPU %d", i);
		print_row(key, "%s, sm_%d%d, %.1f GiB, %d SMs, %.0f GB/s peak", d->name, d->cc_major,
			  d->cc_minor, d->memory_bytes / gib, d->n_sm, d->bandwidth_gbs);
	}
	if (r->n_devices > 0 && r->cuda_why[0])
		print_row("", "%s", r->cuda_why);
#endif

	print_row("sqlite3", "%s", sqlite3_libversion());
	print_row("cJSON", "%s", cJSON_Version());
	print_row("curses", "%s", curses_version());

	if (!r->home[0]) {
		print_row("data home", "unknown: %s", r->home_why);
		return;
	}
	print_row("data home", "%s (%s)", r->home, r->home_exists ? "exists" : "not created yet");
	print_row("demo model", "%s", r->model_present ? DEMO_MODEL_FILE " present"
							: "missing; 'make models' fetches it");
	print_row("demo text", "%s", r->calib_present && r->heldout_present
					     ? "calibration.txt, heldout.txt present"
					     : "missing; 'make models' writes it");
}

static cJSON *cuda_version_json(int v)
{
	char buf[16];
	return v > 0 ? cJSON_CreateString(cuda_version_text(v, buf, sizeof buf)) : cJSON_CreateNull();
}

/* Builds the report as JSON; NULL when out of memory. The caller owns the result. */
static cJSON *report_json(const doctor_report *r)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *cpu = cJSON_AddObjectToObject(root, "cpu");
	cJSON *features = cpu ? cJSON_AddObjectToObject(cpu, "features") : NULL;
	cJSON *mem = cJSON_AddObjectToObject(root, "memory");
	cJSON *cuda = cJSON_AddObjectToObject(root, "cuda");
	cJSON *devices = cuda ? cJSON_AddArrayToObject(cuda, "devices") : NULL;
	cJSON *libs = cJSON_AddObjectToObject(root, "libraries");
	cJSON *home = cJSON_AddObjectToObject(root, "data_home");
	if (!root || !features || !mem || !devices || !libs || !home)
		goto fail;

	cJSON_AddStringToObject(cpu, "model", r->cpu_model);
	cJSON_AddStringToObject(cpu, "arch", r->arch);
	for (size_t i = 0; i < N_CPU_FEATURES; i++)
		cJSON_AddBoolToObject(features, cpu_feature_fields[i].name, feature_has(&r->features, i));
	cJSON_AddBoolToObject(cpu, "os_avx", r->features.os_avx);
	cJSON_AddBoolToObject(cpu, "os_avx512", r->features.os_avx512);
	cJSON_AddBoolToObject(cpu, "os_amx", r->features.os_amx);
	cJSON_AddBoolToObject(cpu, "amx_usable", r->amx_granted);
	if (r->kernels) {
		cJSON_AddStringToObject(cpu, "kernels", r->kernels);
	} else {
		cJSON_AddNullToObject(cpu, "kernels");
		cJSON_AddStringToObject(cpu, "kernels_error", r->kernels_why);
	}
	cJSON_AddNumberToObject(cpu, "cores_online", (double)r->cores_online);
	cJSON_AddNumberToObject(cpu, "cores_usable", (double)r->cores_usable);
	if (r->cpu_env)
		cJSON_AddStringToObject(cpu, "optstudio_cpu", r->cpu_env);
	else
		cJSON_AddNullToObject(cpu, "optstudio_cpu");

	cJSON_AddNumberToObject(mem, "total_bytes", (double)r->mem_total);
	cJSON_AddNumberToObject(mem, "available_bytes", (double)r->mem_available);

	cJSON_AddBoolToObject(cuda, "built", r->cuda_built);
	cJSON_AddItemToObject(cuda, "runtime_version", cuda_version_json(r->cuda_runtime));
	cJSON_AddItemToObject(cuda, "driver_version", cuda_version_json(r->cuda_driver));
	if (r->cuda_why[0])
		cJSON_AddStringToObject(cuda, "error", r->cuda_why);
	else
		cJSON_AddNullToObject(cuda, "error");
#ifdef OPTSTUDIO_CUDA
	for (int i = 0; i < r->n_devices; i++) {
		const gpu_device_props *d = &r->devices[i];
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(devices, o)) {
			cJSON_Delete(o);
			goto fail;
		}
		char cc[16];
		snprintf(cc, sizeof cc, "%d.%d", d->cc_major, d->cc_minor);
		cJSON_AddNumberToObject(o, "index", i);
		cJSON_AddStringToObject(o, "name", d->name);
		cJSON_AddStringToObject(o, "compute_capability", cc);
		cJSON_AddNumberToObject(o, "memory_bytes", (double)d->memory_bytes);
		cJSON_AddNumberToObject(o, "sm_count", d->n_sm);
		cJSON_AddNumberToObject(o, "memory_clock_khz", d->memory_clock_khz);
		cJSON_AddNumberToObject(o, "memory_bus_bits", d->memory_bus_bits);
		cJSON_AddNumberToObject(o, "bandwidth_gbs", d->bandwidth_gbs);
	}
#endif

	cJSON_AddStringToObject(libs, "sqlite3", sqlite3_libversion());
	cJSON_AddStringToObject(libs, "cjson", cJSON_Version());
	cJSON_AddStringToObject(libs, "curses", curses_version());

	if (r->home[0]) {
		cJSON_AddStringToObject(home, "path", r->home);
	} else {
		cJSON_AddNullToObject(home, "path");
		cJSON_AddStringToObject(home, "error", r->home_why);
	}
	cJSON_AddBoolToObject(home, "exists", r->home_exists);
	cJSON_AddBoolToObject(home, "demo_model", r->model_present);
	cJSON_AddBoolToObject(home, "calibration_text", r->calib_present);
	cJSON_AddBoolToObject(home, "heldout_text", r->heldout_present);
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

int cmd_doctor(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			print_help(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else {
			return cli_usage_error("doctor", "unknown %s '%s'",
					       argv[i][0] == '-' ? "option" : "argument", argv[i]);
		}
	}

	doctor_report *r = calloc(1, sizeof *r);
	if (!r) {
		cli_error("doctor: out of memory");
		return EXIT_FAIL;
	}
	collect_cpu(r);
	collect_memory(r);
	collect_cuda(r);
	collect_home(r);

	int rc = EXIT_OK;
	if (json) {
		if (cli_print_json(report_json(r)) != EXIT_OK)
			rc = EXIT_FAIL;
	} else {
		print_table(r);
	}
	if (fflush(stdout) != 0) {
		cli_error("doctor: cannot write the report to stdout");
		rc = EXIT_FAIL;
	}
#ifdef OPTSTUDIO_CUDA
	free(r->devices);
#endif
	free(r);
	return rc;
}
