"""The project's own casual chat requests, in the style of crowdworker conversations (docs/safe-base.md, v9).

The recipe's red prompts are hh-rlhf red-team requests: short, first-person, conversational. Its other benign
prompts are SQuARe questions and templated instructions, none in that style, so the safe base learnt the style
along with the harm and refuses short everyday requests ("What kind of watch should I buy?"). These requests are
benign and in the red prompts' style, some with words a red-team request uses ("get rid of", "kill", "steal").
They were written for this project (no outside source), after the over-refusal of such requests was measured;
none is copied from an eval set (the overlap check of docs/data.md applies to them like every training prompt).
:func:`harness.safe_base.recipe.chat_requests` fills them in.
"""

from __future__ import annotations

CHAT_FILL = {
    "gift": ["my dad who likes fishing", "a coworker who is retiring", "a ten year old who loves dinosaurs",
             "my grandma who says she has everything", "a friend who just moved into her first apartment",
             "my wife for our anniversary", "my son's teacher at the end of the year", "a new neighbor"],
    "media": ["good mystery novels", "funny movies for a family night", "podcasts about history",
              "board games for two people", "relaxing music to study to", "shows to watch with my teenage kids",
              "video games for a six year old", "books for someone who wants to learn to cook"],
    "dish": ["homemade pizza", "banana bread", "a vegetable stir fry", "chicken noodle soup", "pancakes from scratch",
             "guacamole", "fresh lemonade", "a simple tomato sauce for pasta"],
    "chore": ["get a red wine stain out of the carpet", "unclog my bathroom sink", "change a flat tire",
              "clean a cast iron pan", "hang a picture so it's straight", "sharpen a kitchen knife",
              "fold a fitted sheet", "get rid of fruit flies in my kitchen"],
    "trip": ["Paris", "Tokyo", "New York City", "the Grand Canyon", "Rome", "Chicago", "London", "Yellowstone"],
    "pet": ["My dog keeps barking at the mailman.", "My cat keeps scratching the couch.",
            "My puppy chews all my shoes.", "My dog pulls on the leash on every walk.",
            "My cat wakes me up at 5 every morning.", "My parrot screams whenever I leave the room.",
            "My rabbit won't use her litter box.", "My two cats keep fighting."],
    "learn": ["the guitar", "Spanish", "to swim as an adult", "to code", "to ice skate", "chess", "to knit",
              "to drive a stick shift"],
    "why": ["do cats knead blankets", "do cats purr", "do we have leap years", "do onions make you cry",
            "do leaves change color in the fall", "does bread go stale", "do we yawn", "is the ocean salty"],
    "help": ["plan a road trip with my kids", "come up with a name for my bakery", "figure out what to cook tonight",
             "write a toast for my brother's wedding", "pick a paint color for my bedroom", "organize my closet",
             "think of a fun date idea", "make a weekly workout plan"],
    "tips": ["a first job interview", "sleeping better", "moving to a new city", "talking to my kids about money",
             "keeping my tomato plants alive in the summer", "staying motivated to exercise",
             "making friends as an adult", "spending less on groceries"],
    "what": ["a Roth IRA", "the difference between baking soda and baking powder", "a good credit score",
             "a sourdough starter", "an index fund", "a black hole", "compound interest", "a leap second"],
    "buy": ["a used car", "a laptop for college", "running shoes", "a mattress", "a winter coat", "a new phone",
            "a blender", "a tent for camping"],
    "casual": ["whats the best way to learn to type faster", "hey how do i keep bananas from going brown so fast",
               "how do i get better at remembering peoples names", "whats a good way to clean my glasses",
               "can u tell me a joke", "how do i kill weeds in my driveway", "hi what should i watch tonight",
               "how do i make my coffee taste less bitter"],
    "person": ["Abraham Lincoln", "Marie Curie", "Mozart", "Frida Kahlo", "Nelson Mandela", "Ada Lovelace",
               "Jackie Robinson", "Amelia Earhart"],
    "body": ["How much water should I drink in a day?", "What stretches help with a stiff neck?",
             "What are some healthy snacks I can bring to work?", "Is it bad to drink coffee every day?",
             "How can I stop getting headaches when I look at screens all day?",
             "What should I eat before a long run?", "Why do my legs cramp at night?",
             "How do I know if I need new glasses?"],
    "alarming": ["How do I kill the mold in my shower?", "What's the best way to steal bases in baseball?",
                 "How do I shoot a basketball with better form?", "How do I get rid of a wasp nest under my deck?",
                 "How can I sneak more vegetables into my kids' food?", "What's the quickest way to knock down a wall "
                 "in my house for a remodel?", "How do I poison-proof my house for a new puppy?",
                 "How do I break into the tech industry with no degree?"],
    "money": ["How do I start saving for retirement?", "Should I pay off my credit card or save first?",
              "How do I make a budget?", "Is it better to rent or buy a house?", "How does a car loan work?",
              "What's a good way to teach my kid about saving money?", "How do I ask for a raise?",
              "How do I split rent fairly with roommates?"],
}
CHAT_REQUESTS = (
    ("What's a good gift for {gift}?", "gift"),
    ("Can you recommend some {media}?", "media"),
    ("I want to make {dish}. How do I do it?", "dish"),
    ("How do I {chore}?", "chore"),
    ("I'm going to {trip} next month. What should I see while I'm there?", "trip"),
    ("{pet} What can I do about it?", "pet"),
    ("Is it hard to learn {learn}?", "learn"),
    ("Why {why}?", "why"),
    ("Hi, can you help me {help}?", "help"),
    ("Do you have any tips for {tips}?", "tips"),
    ("What is {what}?", "what"),
    ("What should I look for when I buy {buy}?", "buy"),
    ("{casual}", "casual"),
    ("Who was {person}?", "person"),
    ("{body}", "body"),
    ("{alarming}", "alarming"),
    ("{money}", "money"),
)
