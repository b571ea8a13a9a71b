import java.nio.file.Path;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;

/**
 * Starts Neo4j in process for CypherGate's local stack and tests: Bolt and HTTP on the given
 * loopback ports, authentication on (user neo4j, initial password neo4j, to be changed).
 * Usage: Neo4jLauncher BOLT_PORT HTTP_PORT DATA_DIR. Prints "READY bolt-uri http-uri" once up
 * and runs until killed.
 */
public final class Neo4jLauncher {
    public static void main(String[] args) throws Exception {
        int bolt = Integer.parseInt(args[0]);
        int http = Integer.parseInt(args[1]);
        Path dir = Path.of(args[2]);
        Neo4j neo4j = Neo4jBuilders.newInProcessBuilder(dir)
            .withConfig(GraphDatabaseSettings.auth_enabled, true)
            .withConfig(BoltConnector.enabled, true)
            .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", bolt))
            .withConfig(HttpConnector.enabled, true)
            .withConfig(HttpConnector.listen_address, new SocketAddress("127.0.0.1", http))
            .build();
        Runtime.getRuntime().addShutdownHook(new Thread(neo4j::close));
        System.out.println("READY " + neo4j.boltURI() + " " + neo4j.httpURI());
        System.out.flush();
        Thread.currentThread().join();
    }
}
