<?php
// Publish to a user and read who is online, from a PHP backend (no extension needed: the http
// stream wrapper; with ext-curl or Guzzle the calls are the same).
//
//   HERALD_URL=http://127.0.0.1:8080 HERALD_API_KEY=... php publish_presence.php [user]

$heraldUrl = getenv('HERALD_URL') ?: 'http://127.0.0.1:8080';
$apiKey = getenv('HERALD_API_KEY') ?: exit("set HERALD_API_KEY\n");

/** One backend API call; an error answer is a problem document whose `detail` says what to fix. */
function herald(string $method, string $path, ?array $body = null): array
{
    global $heraldUrl, $apiKey;
    $headers = ["Authorization: Bearer $apiKey"];
    if ($body !== null) {
        $headers[] = 'Content-Type: application/json';
    }
    $context = stream_context_create(['http' => [
        'method' => $method,
        'header' => implode("\r\n", $headers),
        'content' => $body === null ? '' : json_encode($body),
        'timeout' => 10,
        'ignore_errors' => true, // read problem documents too
    ]]);
    $text = file_get_contents($heraldUrl . $path, false, $context);
    if ($text === false) {
        throw new RuntimeException("$method $path: no answer from Herald");
    }
    preg_match('{HTTP/\S+ (\d+)}', $http_response_header[0], $status);
    $answer = json_decode($text, true);
    if ((int) $status[1] >= 300) {
        throw new RuntimeException("$method $path: {$status[1]} " . ($answer['detail'] ?? $text));
    }
    return $answer;
}

$user = $argv[1] ?? 'alice';

$sent = herald('POST', '/api/publish', [
    'to' => ['users' => [$user]],
    'event' => 'ALERT',
    'data' => ['text' => 'Hello from PHP'],
]);
echo "published {$sent['id']} to {$sent['delivered']} connection(s)\n";

$online = herald('GET', '/api/users?limit=100');
$names = array_map(fn ($u) => "{$u['id']} ({$u['connections']})", $online['users']);
echo 'online: ' . (implode(', ', $names) ?: 'nobody') . "\n";

$one = herald('GET', '/api/users/' . rawurlencode($user));
$state = $one['online'] ? 'online' : 'offline';
echo "{$one['id']} is $state with " . count($one['connections']) . " connection(s)\n";
