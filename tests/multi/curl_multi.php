<?php
// PHP curl_multi client for tests/integration/test_multi_hosts.c: the usual PHP code for
// parallel requests (curl_multi_add_handle, curl_multi_exec, curl_multi_select,
// curl_multi_info_read). Never calls curl_exec.
//
//     php curl_multi.php [--max N] [--cainfo FILE] [--hold-until FILE] URL...
//
// Keeps at most N transfers in the multi at once (0 = all at once; a new handle per URL,
// added when one finishes). Prints one line per URL, in argument order:
// "INDEX ok STATUS LENGTH FIRST-BYTES" or "INDEX error CURLCODE MESSAGE". Exit 0 when every
// transfer got a 200, 1 otherwise, 2 when the 30 s deadline passed. --hold-until FILE: after
// printing, wait (at most 10 s) until FILE exists before exiting, so that the test can look
// at the live process (its metrics endpoint).
$args = array_slice($argv, 1);
$limit = 0;
$ca = null;
$hold = null;
while ($args && substr($args[0], 0, 2) === '--') {
	if ($args[0] === '--max') $limit = (int)$args[1];
	elseif ($args[0] === '--cainfo') $ca = $args[1];
	elseif ($args[0] === '--hold-until') $hold = $args[1];
	else { fwrite(STDERR, "unknown option {$args[0]}\n"); exit(2); }
	$args = array_slice($args, 2);
}
$mh = curl_multi_init();
$todo = array_keys($args);
$index = [];
$results = [];
$active = 0;
$deadline = microtime(true) + 30;
while ($todo || $active) {
	while ($todo && ($limit == 0 || $active < $limit)) {
		$i = array_shift($todo);
		$ch = curl_init($args[$i]);
		curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
		if ($ca !== null) curl_setopt($ch, CURLOPT_CAINFO, $ca);
		curl_multi_add_handle($mh, $ch);
		$index[spl_object_id($ch)] = $i;
		$active++;
	}
	if (microtime(true) > $deadline) {
		echo "deadline passed with $active transfers running\n";
		exit(2);
	}
	do {
		$rc = curl_multi_exec($mh, $running);
	} while ($rc === CURLM_CALL_MULTI_PERFORM);
	while ($info = curl_multi_info_read($mh)) {
		$ch = $info['handle'];
		$i = $index[spl_object_id($ch)];
		if ($info['result'] === CURLE_OK) {
			$body = curl_multi_getcontent($ch);
			$results[$i] = sprintf("ok %d %d %s", curl_getinfo($ch, CURLINFO_RESPONSE_CODE),
			                       strlen($body), json_encode(substr($body, 0, 16)));
		} else {
			$results[$i] = sprintf("error %d %s", $info['result'], curl_error($ch));
		}
		curl_multi_remove_handle($mh, $ch);
		curl_close($ch);
		$active--;
	}
	if ($active && curl_multi_select($mh, 0.5) === -1)
		usleep(10000); // nothing to wait on yet (libcurl's own timers)
}
curl_multi_close($mh);
$bad = 0;
foreach (array_keys($args) as $i) {
	$line = $results[$i] ?? 'missing';
	if (substr($line, 0, 7) !== 'ok 200 ') $bad++;
	echo "$i $line\n";
}
fflush(STDOUT);
$until = microtime(true) + 10;
while ($hold !== null && !file_exists($hold) && microtime(true) < $until)
	usleep(20000);
exit($bad ? 1 : 0);
