import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.neo4j.driver.AuthToken;
import org.neo4j.driver.AuthTokenManager;
import org.neo4j.driver.AuthTokenManagers;
import org.neo4j.driver.AuthTokens;
import org.neo4j.driver.Bookmark;
import org.neo4j.driver.Config;
import org.neo4j.driver.Driver;
import org.neo4j.driver.GraphDatabase;
import org.neo4j.driver.Logging;
import org.neo4j.driver.QueryConfig;
import org.neo4j.driver.Record;
import org.neo4j.driver.RoutingControl;
import org.neo4j.driver.Session;
import org.neo4j.driver.SessionConfig;
import org.neo4j.driver.SimpleQueryRunner;
import org.neo4j.driver.Transaction;
import org.neo4j.driver.exceptions.Neo4jException;
import org.neo4j.driver.exceptions.SecurityException;
import org.neo4j.driver.types.Node;
import org.neo4j.driver.types.Path;
import org.neo4j.driver.types.Relationship;

/**
 * Runs a scenario of named steps with the official Neo4j Java driver and prints one JSON
 * document with each step's outcome (tests/drivers/README.md gives the input and output).
 *
 * <pre>java -cp classes:lib/* Scenario [--check] &lt; scenario.json</pre>
 *
 * <p>--check only validates the input. Exit 0 whatever the server answers (each step reports
 * its own error code); exit 2 when the input itself is malformed.
 */
public final class Scenario {
    private static final Map<String, String> KINDS = Map.of(
        "autocommit", "statement",
        "execute_query", "statement",
        "write_tx", "statements",
        "rollback_tx", "statements",
        "read_tx", "statements",
        "verify_connectivity", "nothing",
        "expired_token_refresh", "statement");
    private static final Gson GSON = new GsonBuilder().serializeNulls().disableHtmlEscaping().create();

    /** Each step fills in its rows (and extras) in {@code out}; an exception becomes its error code. */
    private interface Step {
        void run(Driver driver, Run run, JsonObject step, JsonObject out) throws Exception;
    }

    /** What every step may need from the input. */
    private record Run(String uri, String database) {}

    private static final class MalformedInput extends RuntimeException {
        private static final long serialVersionUID = 1L;

        MalformedInput(String message) {
            super(message);
        }
    }

    private static final Map<String, Step> STEPS = Map.of(
        "autocommit", Scenario::autocommit,
        "execute_query", Scenario::executeQuery,
        "write_tx", Scenario::writeTx,
        "rollback_tx", Scenario::rollbackTx,
        "read_tx", Scenario::readTx,
        "verify_connectivity", (driver, run, step, out) -> {
            driver.verifyConnectivity();
            out.add("rows", new JsonArray());
        },
        "expired_token_refresh", Scenario::expiredTokenRefresh);

    private Scenario() {}

    // ------------------------------------------------------------------ input

    private static void expect(boolean condition, String message) {
        if (!condition) {
            throw new MalformedInput(message);
        }
    }

    private static boolean isString(JsonObject object, String name) {
        return object.has(name) && object.get(name).isJsonPrimitive()
            && object.get(name).getAsJsonPrimitive().isString();
    }

    private static void checkStatement(String where, JsonElement spec) {
        expect(spec.isJsonObject() && isString(spec.getAsJsonObject(), "statement"),
            where + ": needs a statement");
        JsonElement params = spec.getAsJsonObject().get("params");
        expect(params == null || params.isJsonObject(), where + ": params must be a map");
    }

    private static void checkInput(JsonElement element) {
        expect(element != null && element.isJsonObject(), "the input must be a JSON object");
        JsonObject input = element.getAsJsonObject();
        expect(isString(input, "uri"), "uri must be a string");
        expect(!input.has("database") || isString(input, "database"), "database");
        expect(input.has("auth") && input.get("auth").isJsonObject(), "auth must be a map");
        JsonObject auth = input.getAsJsonObject("auth");
        String scheme = isString(auth, "scheme") ? auth.get("scheme").getAsString() : "";
        expect(scheme.equals("basic") && isString(auth, "user") && isString(auth, "password")
            || scheme.equals("bearer") && isString(auth, "token"), "auth scheme");
        expect(input.has("steps") && input.get("steps").isJsonArray(), "steps must be a list");
        JsonArray steps = input.getAsJsonArray("steps");
        for (int i = 0; i < steps.size(); i++) {
            String where = "step " + i;
            expect(steps.get(i).isJsonObject(), where + ": must be a map");
            JsonObject step = steps.get(i).getAsJsonObject();
            String kind = isString(step, "step") ? KINDS.get(step.get("step").getAsString()) : null;
            expect(kind != null, where + ": unknown step");
            expect(!step.has("name") || isString(step, "name"), where + ": name");
            String routing = isString(step, "routing") ? step.get("routing").getAsString() : "write";
            expect(!step.has("routing") || routing.equals("read") || routing.equals("write"),
                where + ": routing is read or write");
            if (kind.equals("statement")) {
                checkStatement(where, step);
            }
            if (kind.equals("statements")) {
                JsonElement statements = step.get("statements");
                expect(statements != null && statements.isJsonArray()
                    && statements.getAsJsonArray().size() > 0, where + ": statements");
                for (int j = 0; j < statements.getAsJsonArray().size(); j++) {
                    checkStatement(where + "." + j, statements.getAsJsonArray().get(j));
                }
            }
            if (step.get("step").getAsString().equals("expired_token_refresh")) {
                JsonElement tokens = step.get("tokens");
                expect(tokens != null && tokens.isJsonArray() && tokens.getAsJsonArray().size() >= 2,
                    where + ": tokens must list at least two tokens");
                tokens.getAsJsonArray().forEach(token -> expect(
                    token.isJsonPrimitive() && token.getAsJsonPrimitive().isString(),
                    where + ": tokens must be strings"));
            }
        }
    }

    // ------------------------------------------------------------------ values

    /** JSON to driver parameters; integral numbers become Longs, as Python's json makes ints. */
    private static Object fromJson(JsonElement element) {
        if (element == null || element.isJsonNull()) {
            return null;
        }
        if (element.isJsonArray()) {
            List<Object> list = new ArrayList<>();
            element.getAsJsonArray().forEach(item -> list.add(fromJson(item)));
            return list;
        }
        if (element.isJsonObject()) {
            Map<String, Object> map = new LinkedHashMap<>();
            element.getAsJsonObject().entrySet().forEach(e -> map.put(e.getKey(), fromJson(e.getValue())));
            return map;
        }
        JsonPrimitive primitive = element.getAsJsonPrimitive();
        if (primitive.isBoolean()) {
            return primitive.getAsBoolean();
        }
        if (primitive.isString()) {
            return primitive.getAsString();
        }
        String number = primitive.getAsString();
        boolean integral = !number.contains(".") && !number.contains("e") && !number.contains("E");
        return integral ? (Object) primitive.getAsLong() : (Object) primitive.getAsDouble();
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> params(JsonObject spec) {
        Object params = fromJson(spec.get("params"));
        return params == null ? Map.of() : (Map<String, Object>) params;
    }

    /**
     * Driver values as plain JSON: nodes {labels, properties}, relationships {type, properties},
     * paths {nodes, relationships}; temporal and spatial values as strings.
     */
    private static JsonElement plain(Object value) {
        if (value == null) {
            return JsonNull.INSTANCE;
        }
        if (value instanceof Boolean b) {
            return new JsonPrimitive(b);
        }
        if (value instanceof Number n) {
            return new JsonPrimitive(n);
        }
        if (value instanceof String s) {
            return new JsonPrimitive(s);
        }
        if (value instanceof byte[] bytes) {
            JsonArray array = new JsonArray();
            for (byte b : bytes) {
                array.add(b & 0xff);
            }
            return array;
        }
        if (value instanceof List<?> list) {
            JsonArray array = new JsonArray();
            list.forEach(item -> array.add(plain(item)));
            return array;
        }
        if (value instanceof Map<?, ?> map) {
            JsonObject object = new JsonObject();
            map.forEach((k, v) -> object.add(String.valueOf(k), plain(v)));
            return object;
        }
        if (value instanceof Node node) {
            List<String> labels = new ArrayList<>();
            node.labels().forEach(labels::add);
            Collections.sort(labels);
            JsonObject object = new JsonObject();
            object.add("labels", plain(labels));
            object.add("properties", plain(node.asMap()));
            return object;
        }
        if (value instanceof Relationship relationship) {
            JsonObject object = new JsonObject();
            object.addProperty("type", relationship.type());
            object.add("properties", plain(relationship.asMap()));
            return object;
        }
        if (value instanceof Path path) {
            JsonArray nodes = new JsonArray();
            path.nodes().forEach(node -> nodes.add(plain(node)));
            JsonArray relationships = new JsonArray();
            path.relationships().forEach(relationship -> relationships.add(plain(relationship)));
            JsonObject object = new JsonObject();
            object.add("nodes", nodes);
            object.add("relationships", relationships);
            return object;
        }
        return new JsonPrimitive(value.toString());
    }

    private static JsonArray rows(List<Record> records) {
        JsonArray rows = new JsonArray();
        records.forEach(record -> rows.add(plain(record.asMap())));
        return rows;
    }

    private static JsonArray runEach(SimpleQueryRunner runner, JsonObject step) {
        JsonArray out = new JsonArray();
        for (JsonElement spec : step.getAsJsonArray("statements")) {
            String statement = spec.getAsJsonObject().get("statement").getAsString();
            out.add(rows(runner.run(statement, params(spec.getAsJsonObject())).list()));
        }
        return out;
    }

    private static JsonArray bookmarks(Session session) {
        JsonArray out = new JsonArray();
        for (Bookmark bookmark : session.lastBookmarks()) {
            out.add(bookmark.value());
        }
        return out;
    }

    private static QueryConfig queryConfig(Run run, JsonObject step) {
        boolean read = isString(step, "routing") && step.get("routing").getAsString().equals("read");
        return QueryConfig.builder()
            .withDatabase(run.database())
            .withRouting(read ? RoutingControl.READ : RoutingControl.WRITE)
            .build();
    }

    // ------------------------------------------------------------------ steps

    private static void autocommit(Driver driver, Run run, JsonObject step, JsonObject out) {
        try (Session session = driver.session(SessionConfig.forDatabase(run.database()))) {
            String statement = step.get("statement").getAsString();
            out.add("rows", rows(session.run(statement, params(step)).list()));
            out.add("bookmarks", bookmarks(session));
        }
    }

    private static void executeQuery(Driver driver, Run run, JsonObject step, JsonObject out) {
        var result = driver.executableQuery(step.get("statement").getAsString())
            .withParameters(params(step))
            .withConfig(queryConfig(run, step))
            .execute();
        out.add("rows", rows(result.records()));
    }

    private static void writeTx(Driver driver, Run run, JsonObject step, JsonObject out) {
        boolean explicit = step.has("explicit") && step.get("explicit").getAsBoolean();
        try (Session session = driver.session(SessionConfig.forDatabase(run.database()))) {
            if (explicit) {
                try (Transaction tx = session.beginTransaction()) {
                    out.add("rows", runEach(tx, step));
                    tx.commit();
                }
            } else {
                out.add("rows", session.executeWrite(tx -> runEach(tx, step)));
            }
            out.add("bookmarks", bookmarks(session));
        }
    }

    private static void rollbackTx(Driver driver, Run run, JsonObject step, JsonObject out) {
        try (Session session = driver.session(SessionConfig.forDatabase(run.database()))) {
            Transaction tx = session.beginTransaction();
            JsonArray rows;
            try {
                rows = runEach(tx, step);
            } catch (RuntimeException error) {
                tx.close(); // rolls back, and its own failure must not hide the statement's
                throw error;
            }
            tx.rollback();
            out.add("rows", rows);
            out.add("bookmarks", bookmarks(session));
        }
    }

    private static void readTx(Driver driver, Run run, JsonObject step, JsonObject out) {
        try (Session session = driver.session(SessionConfig.forDatabase(run.database()))) {
            out.add("rows", session.executeRead(tx -> runEach(tx, step)));
            out.add("bookmarks", bookmarks(session));
        }
    }

    /**
     * A driver of its own whose bearer token manager hands out tokens[0] until the server has
     * answered TokenExpired, then tokens[1], and so on; reports how often it was asked.
     */
    private static void expiredTokenRefresh(Driver unused, Run run, JsonObject step, JsonObject out) {
        List<String> tokens = new ArrayList<>();
        step.getAsJsonArray("tokens").forEach(token -> tokens.add(token.getAsString()));
        AtomicInteger calls = new AtomicInteger();
        List<String> codes = Collections.synchronizedList(new ArrayList<>());
        AuthTokenManager bearer = AuthTokenManagers.bearer(() -> {
            calls.incrementAndGet();
            long expired;
            synchronized (codes) {
                expired = codes.stream().filter(code -> code.endsWith(".TokenExpired")).count();
            }
            String token = tokens.get((int) Math.min(expired, tokens.size() - 1));
            return AuthTokens.bearer(token).expiringAt(Long.MAX_VALUE);
        });
        AuthTokenManager recording = new AuthTokenManager() {
            @Override
            public CompletionStage<AuthToken> getToken() {
                return bearer.getToken();
            }

            @Override
            public boolean handleSecurityException(AuthToken token, SecurityException error) {
                codes.add(error.code());
                return bearer.handleSecurityException(token, error);
            }
        };
        try (Driver driver = GraphDatabase.driver(run.uri(), recording, config())) {
            var query = driver.executableQuery(step.get("statement").getAsString())
                .withParameters(params(step))
                .withConfig(queryConfig(run, step));
            if (step.has("pause_ms")) {
                // Run once, then wait: the first token expires while its connection stays open.
                query.execute();
                try {
                    Thread.sleep(step.get("pause_ms").getAsLong());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            var result = query.execute();
            out.add("rows", rows(result.records()));
        } finally {
            out.addProperty("token_calls", calls.get());
            synchronized (codes) {
                out.add("security_codes", plain(new ArrayList<>(codes)));
            }
        }
    }

    // ------------------------------------------------------------------ main

    /** Short enough that a refused or broken server fails a test quickly, not after 30 s of retries. */
    private static Config config() {
        return Config.builder()
            .withLogging(Logging.none())
            .withMaxTransactionRetryTime(5, TimeUnit.SECONDS)
            .withConnectionTimeout(10, TimeUnit.SECONDS)
            .withConnectionAcquisitionTimeout(15, TimeUnit.SECONDS)
            .build();
    }

    private static void fail(Throwable error, JsonObject out) {
        out.addProperty("ok", false);
        out.add("rows", new JsonArray());
        String code = error instanceof Neo4jException e ? e.code() : null;
        out.addProperty("error_code", code != null && code.startsWith("Neo.") ? code : null);
        if (error instanceof Neo4jException e && e.gqlStatus() != null) {
            out.addProperty("gql_status", e.gqlStatus());
        }
        out.addProperty("error", error.getClass().getSimpleName() + ": " + error.getMessage());
    }

    private static JsonArray runAll(JsonObject input, boolean checkOnly) {
        Run run = new Run(input.get("uri").getAsString(),
            input.has("database") ? input.get("database").getAsString() : "neo4j");
        JsonArray results = new JsonArray();
        List<JsonObject> outcomes = new ArrayList<>();
        for (JsonElement element : input.getAsJsonArray("steps")) {
            JsonObject step = element.getAsJsonObject();
            JsonObject out = new JsonObject();
            out.add("step", step.get("step"));
            out.add("name", step.has("name") ? step.get("name") : step.get("step"));
            out.addProperty("ok", true);
            if (checkOnly) {
                out.addProperty("checked", true);
                out.add("rows", new JsonArray());
            }
            out.add("error_code", JsonNull.INSTANCE);
            outcomes.add(out);
            results.add(out);
        }
        if (checkOnly) {
            return results;
        }
        JsonObject auth = input.getAsJsonObject("auth");
        AuthToken token = auth.get("scheme").getAsString().equals("basic")
            ? AuthTokens.basic(auth.get("user").getAsString(), auth.get("password").getAsString())
            : AuthTokens.bearer(auth.get("token").getAsString());
        try (Driver driver = GraphDatabase.driver(run.uri(), token, config())) {
            JsonArray steps = input.getAsJsonArray("steps");
            for (int i = 0; i < steps.size(); i++) {
                JsonObject step = steps.get(i).getAsJsonObject();
                try {
                    STEPS.get(step.get("step").getAsString()).run(driver, run, step, outcomes.get(i));
                } catch (Exception error) {
                    fail(error, outcomes.get(i));
                }
            }
        } catch (RuntimeException error) { // a URI the driver refuses fails every step
            outcomes.stream().filter(out -> !out.has("rows")).forEach(out -> fail(error, out));
        }
        return results;
    }

    public static void main(String[] args) {
        boolean checkOnly = Arrays.asList(args).contains("--check");
        JsonObject input;
        try {
            JsonElement element = JsonParser.parseReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8));
            checkInput(element);
            input = element.getAsJsonObject();
        } catch (JsonParseException | MalformedInput | IllegalStateException error) {
            System.err.println("malformed input: " + error.getMessage());
            System.exit(2);
            return;
        }
        JsonObject document = new JsonObject();
        document.addProperty("driver", "neo4j-java-driver/" + driverVersion());
        document.add("results", runAll(input, checkOnly));
        System.out.println(GSON.toJson(document));
        System.out.flush();
        System.exit(0); // the driver's event loop threads need not wind down first
    }

    private static String driverVersion() {
        String version = Driver.class.getPackage().getImplementationVersion();
        return version == null ? "unknown" : version.split("-")[0]; // without its commit
    }
}
