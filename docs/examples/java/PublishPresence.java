// Publish to a user and read who is online, from a Java backend (java.net.http, Java 11+).
//
//   HERALD_URL=http://127.0.0.1:8080 HERALD_API_KEY=... java PublishPresence.java [user]
//
// The JDK has no JSON parser: this example writes its one request body by hand and prints the
// answers as they come. In an application, use your JSON library (Jackson, Gson) for both.

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

public class PublishPresence {
    static final String HERALD_URL = System.getenv().getOrDefault("HERALD_URL", "http://127.0.0.1:8080");
    static final String API_KEY = System.getenv("HERALD_API_KEY");
    // One client for every call: it keeps the connection to Herald open.
    static final HttpClient CLIENT = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** One backend API call; an error answer is a problem document whose `detail` says what to fix. */
    static String herald(String method, String path, String json) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(HERALD_URL + path))
                .timeout(Duration.ofSeconds(10))
                .header("Authorization", "Bearer " + API_KEY);
        if (json != null) {
            request.header("Content-Type", "application/json");
        }
        request.method(method, json == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(json));
        HttpResponse<String> response = CLIENT.send(request.build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() >= 300) {
            throw new IllegalStateException(method + " " + path + ": " + response.statusCode() + " " + response.body());
        }
        return response.body();
    }

    public static void main(String[] args) throws Exception {
        if (API_KEY == null) {
            throw new IllegalStateException("set HERALD_API_KEY");
        }
        String user = args.length > 0 ? args[0] : "alice";
        // The user id goes into JSON and a URL: keep it to letters, digits, '-' and '_' here, or
        // let a JSON library quote it.
        if (!user.matches("[A-Za-z0-9_-]+")) {
            throw new IllegalArgumentException("user ids in this example are letters, digits, - and _");
        }

        String sent = herald("POST", "/api/publish",
                "{\"to\": {\"users\": [\"" + user + "\"]}, \"event\": \"ALERT\", \"data\": {\"text\": \"Hello from Java\"}}");
        System.out.println("published: " + sent); // {"id":"...","delivered":N}

        System.out.println("online: " + herald("GET", "/api/users?limit=100", null));
        System.out.println(user + ": " + herald("GET", "/api/users/" + URLEncoder.encode(user, StandardCharsets.UTF_8), null));
    }
}
