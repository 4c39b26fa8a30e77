%% aemp_rate.erl - the Erlang/OTP counterpart of aemp-bench's R5 workload: request/reply
%% between two distributed Erlang nodes at fixed rates, open loop, with the CPU time of
%% both OS processes per million requests and the latency percentiles.
%%
%% Started by run.sh (see README.md), in two roles:
%%   node B:  erl -name b@127.0.0.1 ... -s aemp_rate serve
%%            prints "READY <os pid>", then answers {echo_port, From} with an echo process
%%            and halts when node A disconnects (or when nobody asks within 60 s).
%%   node A:  erl -name a@127.0.0.1 ... -s aemp_rate main -extra --peer B [--duration S]
%%            [--rates 1k,10k,100k]
%%            runs the rates one after the other and halts (status 1 on failure).
%%
%% The schedule is the one of aemp-bench: every millisecond, Rate/1000 requests fall due.
%% One process on A is both generator and receiver: an absolute timer
%% (erlang:send_after/4 with {abs, true}) wakes it for the next millisecond, it then sends
%% that millisecond's requests {echo, I, Alias} (a one-shot reply alias, as gen_server:call
%% uses) and every earlier one it is late for, and in between it takes the replies
%% {echo, I}.  Latency runs from a request's scheduled millisecond to the moment its reply
%% is taken.  CPU: utime + stime (fields 14 and 15 of /proc/<pid>/stat, in ticks of
%% getconf CLK_TCK) of both beam processes, read before the first scheduled millisecond and
%% after the last reply.  RESULT lines go to stdout, everything else to stderr.
-module(aemp_rate).
-export([main/0, serve/0]).

-define(SRV, aemp_rate_srv).
%% How long node B waits for node A.
-define(WAIT_FOR_A_MS, 60000).
%% How long the loop waits without any message before it declares replies lost.
-define(SILENCE_MS, 30000).

%%------------------------------------------------------------------------------------
%% node B

serve() ->
    spawn(fun() ->
              register(?SRV, self()),
              io:format("READY ~s~n", [os:getpid()]),
              serve_loop(?WAIT_FOR_A_MS)
          end).

serve_loop(Wait) ->
    receive
        {echo_port, From} ->
            monitor_node(node(From), true),
            From ! {echo_port, spawn(fun echo/0), os:getpid()},
            serve_loop(infinity);
        {nodedown, _} ->
            erlang:halt(0)
    after Wait ->
            io:format(standard_error, "node B: no node A came~n", []),
            erlang:halt(1)
    end.

echo() ->
    receive
        {echo, I, Reply} ->
            Reply ! {echo, I},
            echo()
    end.

%%------------------------------------------------------------------------------------
%% node A

main() ->
    Args = init:get_plain_arguments(),
    spawn(fun() ->
                  {Pid, Ref} = spawn_monitor(fun() -> run(Args) end),
                  receive
                      {'DOWN', Ref, process, Pid, normal} ->
                          erlang:halt(0);
                      {'DOWN', Ref, process, Pid, Why} ->
                          io:format(standard_error, "R5 FAILED: ~p~n", [Why]),
                          erlang:halt(1)
                  end
          end).

run(Args) ->
    Opts = options(Args, #{duration => 10.0, rates => [1000, 10000, 100000]}),
    Peer = case Opts of
               #{peer := P} -> list_to_atom(P);
               _ -> exit(no_peer_given)
           end,
    true = net_kernel:connect_node(Peer) orelse exit({cannot_connect, Peer}),
    {?SRV, Peer} ! {echo_port, self()},
    {Echo, BPid} = receive
                       {echo_port, E, B} -> {E, B}
                   after 10000 -> exit(node_b_did_not_answer)
                   end,
    Hz = clk_tck(),
    Ticks = round(maps:get(duration, Opts) * 1000),
    Ticks > 0 orelse exit(duration_too_short),
    %% Warm-up, not reported: 0.5 s at 10k req/s.
    _ = rate_run(Echo, 10000, 500, Hz, BPid),
    lists:foreach(fun(Rate) -> report(Rate, Ticks, rate_run(Echo, Rate, Ticks, Hz, BPid)) end,
                  maps:get(rates, Opts)).

options([], O) -> O;
options(["--peer", P | T], O) -> options(T, O#{peer => P});
options(["--duration", D | T], O) -> options(T, O#{duration => number(D)});
options(["--rates", R | T], O) ->
    options(T, O#{rates => [rate(X) || X <- string:lexemes(R, ",")]});
options([X | _], _) -> exit({bad_argument, X}).

number(S) ->
    case string:to_float(S) of
        {F, ""} -> F;
        _ -> float(list_to_integer(S))
    end.

rate(S) ->
    N = case lists:reverse(S) of
            "k" ++ K -> list_to_integer(lists:reverse(K)) * 1000;
            _ -> list_to_integer(S)
        end,
    (N > 0 andalso N rem 1000 =:= 0) orelse exit({rate_not_a_multiple_of_1000, S}),
    N.

clk_tck() ->
    case string:to_integer(string:trim(os:cmd("getconf CLK_TCK"))) of
        {N, ""} when N > 0 -> N;
        _ -> exit(no_clk_tck)
    end.

%% utime + stime of an OS process in clock ticks
cpu_ticks(Pid) ->
    {ok, Stat} = file:read_file("/proc/" ++ Pid ++ "/stat"),
    %% field 2 (the command) is in parentheses; after the last ')' comes field 3
    [_, Rest] = string:split(Stat, ")", trailing),
    Fields = string:lexemes(Rest, " \n"),
    binary_to_integer(lists:nth(12, Fields)) + binary_to_integer(lists:nth(13, Fields)).

cpu_both(BPid) -> cpu_ticks("self") + cpu_ticks(BPid).

%% One run; returns {Latencies (ns, sorted), Lateness of the timer per millisecond (ns,
%% sorted), ElapsedNs (first scheduled millisecond to last reply), CpuSeconds, N}.
rate_run(Echo, Rate, Ticks, Hz, BPid) ->
    PerTick = max(1, Rate div 1000),
    N = PerTick * Ticks,
    Cpu0 = cpu_both(BPid),
    T0ms = erlang:monotonic_time(millisecond) + 2,
    erlang:send_after(T0ms, self(), tick, [{abs, true}]),
    C = #{echo => Echo, per_tick => PerTick, ticks => Ticks, n => N, t0ms => T0ms,
          t0ns => T0ms * 1000000},
    {Lats, Lags, LastNs} = loop(0, 0, #{}, [], [], 0, C),
    Cpu1 = cpu_both(BPid),
    {lists:sort(Lats), lists:sort(Lags), LastNs - T0ms * 1000000, (Cpu1 - Cpu0) / Hz, N}.

loop(K, Got, _, Lats, Lags, LastNs, #{ticks := K, n := Got}) ->
    {Lats, Lags, LastNs};
loop(K, Got, Pend, Lats, Lags, LastNs, C) ->
    receive
        {echo, I} ->
            Now = now_ns(),
            case maps:take(I, Pend) of
                {_, Pend1} ->
                    #{t0ns := T0, per_tick := PerTick} = C,
                    Lat = Now - (T0 + (I div PerTick) * 1000000),
                    loop(K, Got + 1, Pend1, [Lat | Lats], Lags, Now, C);
                error ->
                    exit({unexpected_reply, I})
            end;
        tick ->
            Now = now_ns(),
            #{t0ns := T0, t0ms := T0ms, ticks := Ticks} = C,
            Lag = Now - (T0 + K * 1000000),
            %% every millisecond due by now, the current one included
            Last = max(K, min(Ticks - 1, (Now - T0) div 1000000)),
            Pend1 = issue(K, Last, Pend, C),
            K1 = Last + 1,
            K1 < Ticks andalso erlang:send_after(T0ms + K1, self(), tick, [{abs, true}]),
            loop(K1, Got, Pend1, Lats, [Lag | Lags], LastNs, C)
    after ?SILENCE_MS ->
            exit({replies_lost, maps:get(n, C) - Got})
    end.

%% sends the requests of milliseconds K..Last
issue(K, Last, Pend, _) when K > Last -> Pend;
issue(K, Last, Pend, C = #{per_tick := PerTick}) ->
    issue(K + 1, Last, send(K * PerTick, (K + 1) * PerTick, Pend, C), C).

send(I, End, Pend, _) when I =:= End -> Pend;
send(I, End, Pend, C = #{echo := Echo}) ->
    Echo ! {echo, I, erlang:alias([reply])},
    send(I + 1, End, Pend#{I => sent}, C).

report(Rate, Ticks, {Lats, Lags, ElapsedNs, Cpu, N}) ->
    L = label(Rate),
    %% the schedule's last millisecond counts whole: keeping up gives the nominal rate
    El = max(ElapsedNs, Ticks * 1000000) / 1.0e9,
    io:format(standard_error,
              "R5 @~s: ~b requests, last reply ~.3f s after the first was due, CPU ~.3f s "
              "(~.2f cores); timer lateness p50 ~.1f us, p99 ~.1f us~n",
              [L, N, ElapsedNs / 1.0e9, Cpu, Cpu / El, pct(Lags, 0.5) / 1000,
               pct(Lags, 0.99) / 1000]),
    result("cpu_per_mreq@" ++ L, Cpu / N * 1.0e6, "s"),
    result("p50@" ++ L, pct(Lats, 0.50) / 1000, "us"),
    result("p99@" ++ L, pct(Lats, 0.99) / 1000, "us"),
    result("achieved_rate@" ++ L, N / El, "req/s").

label(Rate) when Rate rem 1000 =:= 0 -> integer_to_list(Rate div 1000) ++ "k";
label(Rate) -> integer_to_list(Rate).

%% nearest-rank percentile of a sorted list
pct([], _) -> 0;
pct(Sorted, Q) ->
    Len = length(Sorted),
    lists:nth(min(Len, max(1, ceil(Q * Len))), Sorted).

%% the number format of aemp-bench: integers from 1000 up, three decimals below
result(Fig, V, Unit) ->
    S = if V >= 1000 -> integer_to_list(round(V));
           true -> float_to_list(float(V), [{decimals, 3}])
        end,
    io:format("RESULT R5 ~s ~s ~s~n", [Fig, S, Unit]).

now_ns() -> erlang:monotonic_time(nanosecond).
