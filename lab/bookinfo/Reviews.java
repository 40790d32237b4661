// Bookinfo's reviews: for each request, calls ratings through the pod's sidecar on the handling
// thread and answers with the reviews (JDK only: com.sun.net.httpserver and HttpURLConnection; no
// tracing code, no header propagation).
//
// usage: java Reviews.java PORT RATINGS_URL

import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

public class Reviews {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        URI ratings = URI.create(args[1]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        server.setExecutor(Executors.newFixedThreadPool(16));
        server.createContext("/", exchange -> {
            String stars;
            HttpURLConnection call = (HttpURLConnection) ratings.toURL().openConnection();
            call.setConnectTimeout(10_000);
            call.setReadTimeout(10_000);
            try (InputStream in = call.getInputStream()) {
                stars = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            byte[] body = ("{\"id\":0,\"reviews\":[{\"reviewer\":\"Reviewer1\",\"text\":\"An "
                    + "extremely entertaining play by Shakespeare.\",\"rating\":" + stars + "}]}")
                    .getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "application/json");
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
